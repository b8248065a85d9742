"""Attachment file names: RFC 2231 parameters (compat32's `get_filename`), raw 8-bit bytes,
RFC 2047 inside the quoted name as Outlook writes it; then made safe (`safe_filename`: no
directory part, control or bidi characters, a capped length)."""

from __future__ import annotations

import email.message
import os
import unicodedata

from mailbot.mail.charsets import _decode_words, _unsurrogate
from mailbot.mail.headers import _UNFOLD
from mailbot.mail.limits import MailLimits, _safe


def _filename(part: email.message.Message, limits: MailLimits) -> str:
    name = _safe(part.get_filename, None)
    if name is None:
        return ""
    name = str(name)
    if "\ufffd" in name:
        name = _filename_from_8bit(part) or name
    name = _unsurrogate(name)
    if "=?" in name:  # Outlook writes RFC 2047 inside the quoted filename
        name = _decode_words(_UNFOLD.sub("", name))
    return safe_filename(name, limits.max_filename_chars)


def _filename_from_8bit(part: email.message.Message) -> str | None:
    """compat32 turns raw 8-bit parameter bytes into U+FFFD; read them as UTF-8/cp1252."""
    view = email.message.Message()
    for name, value in part.raw_items():
        if name.lower() in ("content-type", "content-disposition"):
            view[name] = _unsurrogate(str(value))
    return _safe(view.get_filename, None)


_INVISIBLE = frozenset("\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069\ufeff")


def safe_filename(name: str, max_chars: int = 200) -> str:
    """No directory part, no control or bidi characters ("invoice\u202efdp.exe"), capped
    length with the extension kept; "" when nothing usable is left."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(c for c in name if unicodedata.category(c) != "Cc" and c not in _INVISIBLE)
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        return ""
    if len(name) > max_chars:
        root, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = root[:max_chars - len(ext)].rstrip() + ext
    return name
