"""Raw bytes of a mail -> `ParsedMail`. Pure, never raises, bounded in time and memory.

What comes from where, and why:

* The MIME tree: the standard library's compat32 parser (`email.message_from_bytes`), the
  very call `mailparser.parse_from_bytes` makes, run once. Building mail-parser's `MailParser`
  object on that same tree costs ~0.8 ms more per 12 KB mail (a third of it parsing every
  Received line; it also re-encodes attachments to base64 and builds two dict views nobody
  reads here), it loses the part nesting (we need "forwarded" vs "direct") and has no size or
  part limits: we walk the tree ourselves. `policy.default` is not used: its header objects
  cost ~8 ms a mail and add nothing the functions below do not do.
* From mail-parser, what it does better than the standard library: `get_addresses` (a
  hardened RFC 5322 scanner: an address never comes from an encoded word or a display name,
  ambiguous items become diagnostics, names are decoded in their lexical context),
  `parse_mail_date` (dates with diagnostics, in UTC) and `decode_base64_payload` (broken base64
  read the way mail clients read it).
* Ours: RFC 2047 words (windows-1252 for latin-1 labels, as Outlook needs), RFC 2231
  filenames (compat32's `get_filename`, then RFC 2047 inside it as Outlook writes it), the
  body text (HTML turned to text by a linear scanner: Python 3.11's `html.parser` is quadratic
  or worse on unclosed constructs, 100 KB of `<a ` cost 96 s), attachments with their origin,
  and winmail.dat read by tnefparse behind a framing and bounds check of our own.

The limits (`MailLimits`), and what each protects against. The stdlib parser costs ~3 µs a
line and its parameter parser is quadratic (a 40 KB Content-Type costs 0.5 s). So: a message
size (bigger: headers only); the top header block and each header value before decoding;
Content-Type/-Disposition fields cut to a size and a number of ';'; a number of lines handed
to the parser, after large base64 runs are set aside (replaced by a placeholder line and put
back, piecewise, when their part is decoded: a 30 MB attachment is 500,000 lines the parser
never sees; a 48 MB mail parses in 0.5 s where the stdlib parser alone takes 1.2 s); the parts
walked; the nesting depth; the attachment size (bigger: size and hash only, decoded in
chunks).

Where each part lives: this module walks the MIME tree and builds the `ParsedMail`; beside it,
`limits` (MailLimits, the defect list), `prepare` (the bytes before the MIME parser), `headers`
(addresses, ids, dates, the content hash), `charsets` (charsets and RFC 2047 words), `payloads`
(decoding a part, base64 in chunks), `filenames`, `html_text` (HTML to text) and `tnef`
(winmail.dat).
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.parser
import hashlib
import re
import urllib.parse
from dataclasses import dataclass, field
from types import MappingProxyType

from mailbot.mail.charsets import _decode_bytes
from mailbot.mail.filenames import _filename, safe_filename
from mailbot.mail.headers import _content_hash, _fields, _read_headers
from mailbot.mail.html_text import html_to_text
from mailbot.mail.limits import (
    DEFAULT_LIMITS,
    KEPT_HEADERS,
    MailLimits,
    _Defects,
    _safe,
)
from mailbot.mail.model import AttachedMail, Attachment, ParsedMail
from mailbot.mail.payloads import _decode_payload
from mailbot.mail.prepare import _body_start, _prepare, _Prepared
from mailbot.mail.tnef import _TNEF_TYPES, _tnef_files

# What other modules and the tests import from here (several now live beside it).
__all__ = ["DEFAULT_LIMITS", "KEPT_HEADERS", "MailLimits", "html_to_text", "mime_tree",
           "parse_mail", "safe_filename"]

# Parts that are machine reports: neither body text nor files.
_REPORT_TYPES = frozenset({
    "message/delivery-status", "message/disposition-notification", "message/feedback-report",
    "text/rfc822-headers", "message/global-delivery-status", "message/global-headers",
})
_HTML_MAX_CHARS = 2_000_000
_BODY_MAX_BYTES = 2_000_000  # of one text part, decoded before its charset
_MAX_ATTACHED_MAILS = 10  # whose headers are read; a mail may nest thousands


@dataclass
class _Attached:
    """What the walk gathers of the mails attached whole (message/rfc822): their headers, text."""
    mails: list[AttachedMail] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)


def parse_mail(raw: bytes, limits: MailLimits | None = None) -> ParsedMail:
    """Read one mail. Never raises but MemoryError: what could not be read is in `defects`."""
    limits = limits or DEFAULT_LIMITS
    try:
        return _parse(bytes(raw), limits)
    except MemoryError:
        raise  # the reader process's memory bound: the mail is set aside whole (mailbot/readers.py)
    except Exception as exc:  # noqa: BLE001 - last resort: a mail must never stop the pipeline
        return _unreadable(raw, f"parser failure: {type(exc).__name__}")


def _parse(raw: bytes, limits: MailLimits) -> ParsedMail:
    defects = _Defects(limits.max_defects)
    body_start = _body_start(raw)
    prepared = _Prepared(b"")
    if len(raw) > limits.max_message_bytes:
        defects.add("message over size limit: headers only")
        msg = _headers_only(raw[:min(body_start, limits.max_header_bytes)])
    else:
        prepared = _prepare(raw, limits, defects)
        try:
            msg = email.message_from_bytes(prepared.data)
        except RecursionError:
            defects.add("nesting too deep: headers only")
            msg = _headers_only(raw[:min(body_start, limits.max_header_bytes)])
            prepared = _Prepared(b"")
    fields = _fields(msg)
    content_hash = _content_hash(fields, raw, body_start)
    head = _read_headers(fields, limits, defects)
    plain: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    attached = _Attached()
    if prepared.data:
        _walk(msg, prepared, limits, defects, plain, htmls, attachments, attached)
        attachments = _mark_embedded(attachments, htmls)
    body = _body_text(plain, htmls, limits, defects)
    return ParsedMail(
        content_hash=content_hash, body_text=body, attachments=tuple(attachments),
        defects=defects.tuple(), content_type=_safe(msg.get_content_type, "text/plain"),
        size=len(raw), attached_mails=tuple(attached.mails),
        attached_text=_body_text(attached.plain, attached.htmls, limits, _Defects(0)) if attached.mails else "",
        **head,
    )


def mime_tree(raw: bytes, limits: MailLimits | None = None) -> email.message.Message:
    """The compat32 tree parse_mail reads, under the same input limits (for code that needs a
    `Message`, such as flufl.bounce). Never raises."""
    limits = limits or DEFAULT_LIMITS
    try:
        raw = bytes(raw)
        if len(raw) > limits.max_message_bytes:
            return _headers_only(raw[:min(_body_start(raw), limits.max_header_bytes)])
        return email.message_from_bytes(_prepare(raw, limits, _Defects(0)).data)
    except Exception:  # noqa: BLE001 - RecursionError on absurd nesting, or worse
        return email.message.Message()


def _unreadable(raw: object, defect: str) -> ParsedMail:
    data = raw if isinstance(raw, (bytes, bytearray)) else b""
    return ParsedMail(
        message_id=None, content_hash=hashlib.sha256(data).hexdigest(), subject="", from_=None,
        from_all=(), reply_to=(), to=(), cc=(), delivered_to=(), date=None, in_reply_to=(),
        references=(), return_path=None, headers=MappingProxyType({}), body_text="",
        attachments=(), defects=(defect,), size=len(data),
    )


def _headers_only(head: bytes) -> email.message.Message:
    return email.parser.BytesHeaderParser().parsebytes(head)


# ---------------------------------------------------------------- the MIME tree

def _walk(msg: email.message.Message, prepared: _Prepared, limits: MailLimits,
          defects: _Defects, plain: list[str], htmls: list[str],
          attachments: list[Attachment], attached: _Attached) -> None:
    stack: list[tuple[email.message.Message, int, str]] = [(msg, 0, "direct")]
    walked = 0
    while stack:
        part, depth, origin = stack.pop()
        walked += 1
        if walked > limits.max_parts:
            defects.add("too many parts: the rest skipped")
            return
        for d in getattr(part, "defects", ()):
            defects.add(_defect_phrase(d))
        try:
            _visit(part, depth, origin, stack, prepared, limits, defects, plain, htmls,
                   attachments, attached)
        except RecursionError:
            defects.add("nesting too deep")
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one unreadable part must not lose the others
            defects.add(f"unreadable part: {type(exc).__name__}")


def _visit(part: email.message.Message, depth: int, origin: str, stack: list,
           prepared: _Prepared, limits: MailLimits, defects: _Defects, plain: list[str],
           htmls: list[str], attachments: list[Attachment], attached: _Attached) -> None:
    ctype = part.get_content_type()
    if ctype in _REPORT_TYPES:
        return
    # not get_payload(): on 8-bit text it decodes with the declared charset and may raise
    payload = getattr(part, "_payload", None)
    if isinstance(payload, list):
        if depth >= limits.max_depth:
            defects.add("nesting too deep")
            return
        inner = "forwarded" if part.get_content_maintype() == "message" else origin
        if inner == "forwarded" and origin == "direct" and payload and len(attached.mails) < _MAX_ATTACHED_MAILS \
                and isinstance(payload[0], email.message.Message):
            attached.mails.append(_attached_mail(payload[0], limits))
        stack.extend((p, depth + 1, inner) for p in reversed(payload)
                     if isinstance(p, email.message.Message))
        return
    if ctype.startswith("multipart/"):
        return  # a multipart whose boundary was never found: the stdlib recorded the defect
    filename = _filename(part, limits)
    disposition = (part.get_content_disposition() or "").lower()
    # a file: anything named, marked as attachment, or not plain/HTML text (inline images,
    # application/* without a name, text/calendar...)
    is_file = bool(filename) or disposition == "attachment" or ctype not in ("text/plain", "text/html")
    if not is_file:
        if origin == "direct":
            text = _part_text(part, prepared, limits, defects)
            (plain if ctype == "text/plain" else htmls).append(text)
        elif origin == "forwarded":
            text = _part_text(part, prepared, limits, _Defects(0))
            (attached.plain if ctype == "text/plain" else attached.htmls).append(text)
        return
    att = _attachment(part, filename, ctype, origin, prepared, limits, defects)
    is_tnef = ctype in _TNEF_TYPES or filename.lower() == "winmail.dat"
    if is_tnef and att.size <= limits.max_attachment_bytes:
        inner_files = _tnef_files(att.data, limits, defects)
        if inner_files:
            attachments.extend(inner_files)
            return
    attachments.append(att)


def _attached_mail(inner: email.message.Message, limits: MailLimits) -> AttachedMail:
    """The headers of a mail attached whole; its defects are its own, not this mail's."""
    head = _read_headers(_fields(inner), limits, _Defects(0))
    return AttachedMail(head["from_"], head["subject"], head["message_id"], head["date"])


def _defect_phrase(defect: object) -> str:
    """InvalidBase64PaddingDefect -> "invalid base64 padding"."""
    name = type(defect).__name__.removesuffix("Defect")
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return name.lower()


# ---------------------------------------------------------------- body text and attachments

def _part_text(part: email.message.Message, prepared: _Prepared, limits: MailLimits,
               defects: _Defects) -> str:
    decoded = _decode_payload(part, prepared, _BODY_MAX_BYTES, keep_head=True)
    if decoded.lenient:
        defects.add("invalid base64: decoded leniently")
    if decoded.size > _BODY_MAX_BYTES:
        defects.add("body text truncated")
    text, known = _decode_bytes(decoded.head, _safe(part.get_content_charset, None))
    if not known:
        defects.add("unknown charset")
    return text.replace("\x00", "")


def _body_text(plain: list[str], htmls: list[str], limits: MailLimits, defects: _Defects) -> str:
    text = "\n".join(t for t in plain if t.strip())
    if not text.strip() and htmls:
        text = "\n".join(html_to_text(h[:_HTML_MAX_CHARS]) for h in htmls)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > limits.max_body_chars:
        defects.add("body text truncated")
        text = text[:limits.max_body_chars]
    return text


def _attachment(part: email.message.Message, filename: str, ctype: str, origin: str,
                prepared: _Prepared, limits: MailLimits, defects: _Defects) -> Attachment:
    decoded = _decode_payload(part, prepared, limits.max_attachment_bytes, keep_head=False)
    if decoded.lenient:
        defects.add("invalid base64: decoded leniently")
    over = decoded.size > limits.max_attachment_bytes
    if over:
        defects.add("attachment over size limit: skipped")
    content_id = _safe(lambda: str(part.get("content-id", "") or ""), "").strip().strip("<>").strip()[:250]
    return Attachment(filename=filename, content_type=ctype, size=decoded.size,
                      sha256=decoded.sha256, data=decoded.head, origin=origin, content_id=content_id)


_CID = re.compile(r"""cid:([^\s"'<>()]{1,250})""", re.IGNORECASE)


def _mark_embedded(attachments: list[Attachment], htmls: list[str]) -> list[Attachment]:
    """Mark the files the HTML body shows by their Content-ID (signature logos, mostly)."""
    cids = {a.content_id for a in attachments if a.content_id}
    if not cids:
        return attachments
    shown = {urllib.parse.unquote(m) for h in htmls for m in _CID.findall(h[:_HTML_MAX_CHARS])}
    return [dataclasses.replace(a, embedded=True) if a.content_id in shown else a for a in attachments]
