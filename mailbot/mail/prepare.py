"""The raw bytes of a mail made fit for the stdlib's MIME parser (`_prepare`): the top header
block, the Content-Type/-Disposition fields and the number of lines capped, and in big messages
the large base64 runs set aside behind placeholder lines (`_Prepared` keeps them; payloads.py
puts them back when their part is decoded)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbot.mail.limits import MailLimits, _Defects

# Large base64 runs are set aside only in messages at least this big, and only runs this big.
_ELIDE_FROM_BYTES = 1_000_000
_ELIDE_MIN_RUN = 64_000
# Consecutive lines of 40+ base64 characters, of any length (broken mailers send base64 in
# 1,000-character lines or in one line: the stdlib parser costs ~10x their size in memory).
# Each match takes every line of its run, so no line is scanned twice and the scan is linear
# (a minimum count of lines made failed attempts rescan up to 63 lines: 5 s on 50 MB); the
# size filter (_ELIDE_MIN_RUN) is applied to what it finds. Possessive: a greedy group keeps
# backtracking state per line (98 MB for a 30 MB attachment).
_B64_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]{40,}+\r?\n)++")
_FIELD_END = re.compile(rb"\n(?![ \t])")
# after a "\n" rather than "(?m)^": a literal first character makes the scan 10x faster
_PARAM_FIELD = re.compile(rb"\n(?i:content-(?:type|disposition))[ \t]*:")
_PARAM_FIELD_FIRST = re.compile(rb"(?i:content-(?:type|disposition))[ \t]*:")
_BLANK_LINE = re.compile(rb"\n\r?\n")


@dataclass(frozen=True)
class _Prepared:
    """The bytes handed to the MIME parser, and the base64 runs set aside from them."""
    data: bytes
    token: bytes = b""
    runs: tuple[memoryview, ...] = ()


def _body_start(raw: bytes) -> int:
    """Offset of the body: after the first empty line (len(raw) when there is none)."""
    if raw.startswith(b"\n"):
        return 1
    if raw.startswith(b"\r\n"):
        return 2
    m = _BLANK_LINE.search(raw)
    return m.end() if m else len(raw)


def _prepare(raw: bytes, limits: MailLimits, defects: _Defects) -> _Prepared:
    data = _cap_header_block(raw, limits, defects)
    runs: tuple[memoryview, ...]
    token, runs = b"", ()
    if len(data) >= _ELIDE_FROM_BYTES:
        data, token, runs = _set_aside_base64(data)
    data = _cap_param_fields(data, limits, defects)
    data = _cap_lines(data, limits, defects)
    return _Prepared(data, token, runs)


def _cap_header_block(raw: bytes, limits: MailLimits, defects: _Defects) -> bytes:
    start = _body_start(raw)
    if start <= limits.max_header_bytes:
        return raw
    defects.add("header block over size limit: truncated")
    # cut at the limit, inside a line if need be, so that one huge first field does not
    # take every field with it
    head = raw[:limits.max_header_bytes].rstrip(b"\r")
    return head + (b"" if head.endswith(b"\n") else b"\r\n") + b"\r\n" + raw[start:]


def _set_aside_base64(data: bytes) -> tuple[bytes, bytes, tuple[memoryview, ...]]:
    """Replace each large run of base64 lines by one placeholder line. Runs contain no
    boundary ('-'), header (':') or empty line, so the MIME structure is unchanged."""
    # a placeholder that is nowhere in the mail (a mail that holds them all is simply parsed
    # without setting anything aside, under the line limit)
    token = next((t for t in (b"MAILBOTSETASIDE%d" % i for i in range(4)) if t not in data), None)
    if token is None:
        return data, b"", ()
    view = memoryview(data)
    pieces: list[bytes] = []
    runs: list[memoryview] = []
    pos = 0
    for m in _B64_RUN.finditer(data):
        if m.end() - m.start() < _ELIDE_MIN_RUN:
            continue
        pieces.append(data[pos:m.start()])
        newline = b"\r\n" if data[m.end() - 2:m.end()] == b"\r\n" else b"\n"
        pieces.append(token + b"%08d" % len(runs) + newline)
        runs.append(view[m.start():m.end()])
        pos = m.end()
    if not runs:
        return data, b"", ()
    pieces.append(data[pos:])
    return b"".join(pieces), token, tuple(runs)


def _cap_param_fields(data: bytes, limits: MailLimits, defects: _Defects) -> bytes:
    """Cut Content-Type/-Disposition fields that would make the stdlib's parameter parser
    quadratic (many ';', or a huge field)."""
    pieces: list[bytes] = []
    pos = 0
    first = [0] if _PARAM_FIELD_FIRST.match(data) else []
    for start in first + [m.start() + 1 for m in _PARAM_FIELD.finditer(data)]:
        if start < pos:
            continue
        end_m = _FIELD_END.search(data, start)
        end = end_m.start() + 1 if end_m else len(data)
        fld = data[start:end]
        if len(fld) <= limits.max_param_field_bytes and fld.count(b";") <= limits.max_param_count:
            continue
        keep = fld[:limits.max_param_field_bytes]
        semi = -1
        for _ in range(limits.max_param_count + 1):
            semi = keep.find(b";", semi + 1)
            if semi == -1:
                break
        if semi != -1:
            keep = keep[:semi]
        pieces += [data[pos:start], keep.rstrip(b"\r\n \t") + b"\r\n"]
        pos = end
        defects.add("content-type header too long: truncated")
    if not pieces:
        return data
    pieces.append(data[pos:])
    return b"".join(pieces)


def _cap_lines(data: bytes, limits: MailLimits, defects: _Defects) -> bytes:
    if data.count(b"\n") <= limits.max_lines:
        return data
    defects.add("too many lines: truncated")
    pos, seen, step = 0, 0, 1 << 16
    while True:
        chunk_lines = data.count(b"\n", pos, pos + step)
        if seen + chunk_lines >= limits.max_lines:
            break
        seen += chunk_lines
        pos += step
    for _ in range(limits.max_lines - seen):
        pos = data.index(b"\n", pos) + 1
    return data[:pos]
