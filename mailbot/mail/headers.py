"""The header fields of a mail read into `ParsedMail`'s values: addresses (mail-parser's hardened
scanner), Message-ID and thread ids, Date, Return-Path, the kept headers; and the content hash
that two copies of one mail share."""

from __future__ import annotations

import datetime as dt
import email.message
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from types import MappingProxyType

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from mailbot.mail.charsets import _decode_words, _unsurrogate
from mailbot.mail.limits import MailLimits, _Defects, _safe
from mailbot.mail.model import Address

_HASHED_HEADERS = ("from", "date", "subject", "message-id", "to", "cc")
_ADDRESS_HEADERS = ("from", "reply-to", "to", "cc", "delivered-to", "x-original-to")
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?", re.IGNORECASE)
_MSGID = re.compile(r"<([^<>\s\x00-\x1f\x7f]{1,998})>")
_BARE_MSGID = re.compile(r"[!-~]{1,998}")  # printable ASCII, no space: an id without brackets
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACES = re.compile(r"\s+")
_MAX_IDS = 100


def _fields(msg: email.message.Message) -> dict[str, list[str]]:
    """Lower-case name -> raw values (str, 8-bit bytes as surrogates), in order."""
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(str(name).strip().lower(), []).append(str(value))
    return out


def _raw_value(value: str, limits: MailLimits, defects: _Defects, name: str) -> str:
    if len(value) > limits.max_header_chars:
        defects.add(f"{name} header too long: truncated")
        value = value[:limits.max_header_chars]
    return _UNFOLD.sub("", _unsurrogate(value))


def _one_line(text: str) -> str:
    """Control characters (CR, LF, TAB, NUL...) and runs of spaces -> one space."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text) \
        if not text.isprintable() else text
    return _SPACES.sub(" ", text).strip()


def _read_headers(fields: dict[str, list[str]], limits: MailLimits, defects: _Defects) -> dict:
    def first(name: str) -> str | None:
        values = fields.get(name)
        return _raw_value(values[0], limits, defects, name) if values else None

    subject = first("subject")
    addresses = {name: _addresses(fields.get(name, []), name, limits, defects)
                 for name in _ADDRESS_HEADERS}
    from_all = addresses["from"]
    if len(fields.get("from", [])) > 1:
        defects.add("multiple From headers")
    if len(from_all) > 1:
        defects.add("multiple From addresses")
    if not from_all:
        defects.add("no From address")
    kept = {}
    for name in sorted(limits.kept_headers):
        value = first(name)
        if value is not None:
            kept[name] = _one_line(_decode_words(value, defects))[:limits.max_kept_header_chars]
    return dict(
        message_id=_message_id(first("message-id"), defects),
        subject=_one_line(_decode_words(subject, defects)) if subject else "",
        from_=from_all[0] if from_all else None,
        from_all=from_all,
        reply_to=addresses["reply-to"],
        to=addresses["to"],
        cc=addresses["cc"],
        delivered_to=_unique(addresses["delivered-to"] + addresses["x-original-to"]),
        date=_date(first("date"), defects),
        in_reply_to=_ids(first("in-reply-to")),
        references=_ids(first("references")),
        return_path=_return_path(first("return-path")),
        headers=MappingProxyType(kept),
    )


def _addresses(values: list[str], name: str, limits: MailLimits,
               defects: _Defects) -> tuple[Address, ...]:
    found: list[Address] = []
    for value in values[:limits.max_parts]:
        problems: list[dict] = []
        text = _raw_value(value, limits, defects, name)
        pairs = _safe(lambda: get_addresses(text, defects=problems, decode_names=True), None)  # noqa: B023 - called at once
        if pairs is None or problems:
            defects.add(f"unreadable address in {name}")
        for display, raw in pairs or ():
            addr = raw.strip().lower()
            if not addr:
                continue
            # an encoded word is never part of an address (RFC 2047 section 5): "=?utf-8?b?...?=@x"
            # shows as another address in mail clients that decode it (Mailsploit)
            if len(addr) > 320 or not addr.isprintable() or any(c in addr for c in " <>\\\"") \
                    or _ENCODED_WORD.search(addr):
                defects.add(f"unusable address in {name}")
                continue
            found.append(Address(_display_name(display), addr))
    return _unique(found)


def _display_name(name: str) -> str:
    # mail-parser leaves an encoded word alone when it hides a control character: decode it
    # and drop the control characters instead
    return _one_line(_decode_words(name) if "=?" in name else name)[:200]


def _unique(items: Iterable[Address]) -> tuple[Address, ...]:
    seen: dict[str, Address] = {}
    for a in items:
        seen.setdefault(a.email, a)
    return tuple(seen.values())


def _message_id(value: str | None, defects: _Defects) -> str | None:
    if value is None:
        return None
    m = _MSGID.search(value)
    if m:
        return m.group(1)
    bare = value.strip()
    if "@" in bare and _BARE_MSGID.fullmatch(bare):
        return bare
    defects.add("unusable Message-ID")
    return None


def _ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    ids = _MSGID.findall(value)
    if not ids and "@" in value and _BARE_MSGID.fullmatch(value.strip()):
        ids = [value.strip()]
    # keep the thread's root and its latest messages
    return tuple(ids if len(ids) <= _MAX_IDS else ids[:1] + ids[-(_MAX_IDS - 1):])


def _date(value: str | None, defects: _Defects) -> dt.datetime | None:
    if value is None:
        defects.add("no Date header")
        return None
    result = _safe(lambda: parse_mail_date(value.strip()), None)
    if result is None or result.value is None:
        defects.add("unparsable Date")
        return None
    if result.reasons:
        defects.add("Date: " + ", ".join(result.reasons))
    return result.value.astimezone(dt.timezone.utc)


def _return_path(value: str | None) -> str | None:
    if value is None:
        return None
    value = _one_line(value)
    m = re.search(r"<([^<>]*)>", value)
    inner = (m.group(1) if m else value).strip().lower()
    return inner[:320]


def _content_hash(fields: dict[str, list[str]], raw: bytes, body_start: int) -> str:
    """What two copies of one mail share: the author's headers and the body. Trace headers
    (Received, Delivered-To, Return-Path...) differ between inboxes and are left out; folding
    and line endings may differ between stores and are normalised."""
    h = hashlib.sha256()
    for name in _HASHED_HEADERS:
        for value in fields.get(name, []):
            h.update(name.encode() + b":" + _SPACES.sub(" ", value).strip().encode(
                "utf-8", "surrogateescape") + b"\n")
    h.update(b"\n")
    end = _end_without_trailing_space(raw, body_start)
    pos = body_start
    while pos < end:  # in slices ending at a line end, so no CRLF is split; no full copy
        cut = raw.find(b"\n", min(pos + (1 << 20), end))
        cut = end if cut == -1 or cut >= end else cut + 1
        h.update(raw[pos:cut].replace(b"\r\n", b"\n"))
        pos = cut
    return h.hexdigest()


def _end_without_trailing_space(raw: bytes, start: int) -> int:
    end = len(raw)
    while end > start:  # by slices: ten million trailing newlines must not cost a copy each
        tail = raw[max(start, end - (1 << 16)):end]
        kept = tail.rstrip(b"\r\n\t ")
        if kept:
            return end - len(tail) + len(kept)
        end -= len(tail)
    return start
