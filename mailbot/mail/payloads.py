"""A MIME part's payload as bytes: the base64 runs set aside by prepare.py put back piecewise,
base64 decoded in chunks and read as mail clients read it (leniently), quoted-printable and
uuencode; size and hash always exact, at most a limit of bytes kept (`_Decoded`)."""

from __future__ import annotations

import binascii
import email.message
import hashlib
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailparser.utils import decode_base64_payload

from mailbot.mail.prepare import _Prepared


def _encoded_payload(part: email.message.Message, prepared: _Prepared) -> Iterator[bytes]:
    """The part's payload as it was on the wire, in pieces; base64 runs set aside are put
    back without copying them whole. `_payload` is read directly (as mail-parser does):
    compat32's get_payload() re-decodes 8-bit text with the declared charset, lossily."""
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return
    data = payload.encode() if payload.isascii() else payload.encode("utf-8", "surrogateescape")
    if not prepared.runs or prepared.token not in data:
        yield data
        return
    pattern = re.compile(re.escape(prepared.token) + rb"(\d{8})(?:\r?\n)?")
    pos = 0
    for m in pattern.finditer(data):
        yield data[pos:m.start()]
        index = int(m.group(1))
        if index < len(prepared.runs):
            yield from _chunks(prepared.runs[index])
        pos = m.end()
    yield data[pos:]


def _chunks(view: memoryview, size: int = 1 << 20) -> Iterator[bytes]:
    for i in range(0, len(view), size):
        yield bytes(view[i:i + size])


def _cte(part: email.message.Message) -> str:
    return str(part.get("content-transfer-encoding", "") or "").strip().lower()


@dataclass(frozen=True)
class _Decoded:
    head: bytes  # the first `limit` bytes of the decoded payload
    size: int  # of the whole decoded payload
    sha256: str  # of the whole decoded payload
    lenient: bool = False  # the base64 was broken and was read leniently


def _decode_payload(part: email.message.Message, prepared: _Prepared, limit: int,
                    keep_head: bool) -> _Decoded:
    """`keep_head`: keep the first `limit` bytes of a longer payload (text), else none (files)."""
    cte = _cte(part)
    if cte == "base64":
        return _b64_decode(_encoded_payload(part, prepared), limit, keep_head)
    encoded = b"".join(_encoded_payload(part, prepared))
    if cte == "quoted-printable":
        data = quopri.decodestring(encoded)
    elif cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
        data = payload if isinstance(payload := part.get_payload(decode=True), bytes) else b""
    else:
        data = encoded
    head = data[:limit] if keep_head or len(data) <= limit else b""
    return _Decoded(head, len(data), hashlib.sha256(data).hexdigest())


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_B64 = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))


def _b64_decode(pieces: Iterable[bytes], limit: int, keep_head: bool = True) -> _Decoded:
    """Decode in chunks: size and hash are exact and at most `limit` bytes are kept, so a
    50 MB attachment never sits in memory twice. Read as mail clients read it: characters
    outside the alphabet are ignored, padding ends the data, a lone last character is
    dropped; any of these marks the result lenient."""
    h = hashlib.sha256()
    kept: list[bytes] = []
    state = {"size": 0, "lenient": False}

    def emit(block: bytes) -> None:
        if len(block) % 4 == 1:
            state["lenient"] = True
            block = block[:-1]
        padded = block + b"=" * (-len(block) % 4)
        try:
            out = binascii.a2b_base64(padded, strict_mode=True)
        except binascii.Error:
            state["lenient"] = True
            out = decode_base64_payload(block.decode("latin-1"))
        h.update(out)
        room = limit - state["size"]
        if room > 0:
            kept.append(out[:room])
        state["size"] += len(out)
        if state["size"] > limit and not keep_head:
            kept.clear()

    carry, ended = b"", False
    for piece in pieces:
        clean = piece.translate(None, _NOT_B64)
        spaces = sum(piece.count(c) for c in (b"\n", b"\r", b" ", b"\t"))
        if len(clean) + spaces != len(piece):
            state["lenient"] = True  # characters outside the alphabet, ignored
        if ended:  # padding may straddle two pieces
            state["lenient"] = state["lenient"] or bool(clean.strip(b"="))
            continue
        clean = carry + clean
        eq = clean.find(b"=")
        if eq != -1:
            ended = True
            if clean[eq:] != b"=" * (-eq % 4) or eq % 4 < 2:  # not "xx==" or "xxx="
                state["lenient"] = True
            emit(clean[:eq])
            carry = b""
            continue
        cut = len(clean) - len(clean) % 4
        if cut:
            emit(clean[:cut])
        carry = clean[cut:]
    if carry:
        state["lenient"] = True  # no padding where it was due
        emit(carry)
    return _Decoded(b"".join(kept), state["size"], h.hexdigest(), bool(state["lenient"]))
