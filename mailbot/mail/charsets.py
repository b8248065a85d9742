"""Bytes and header text to str: declared charsets (latin-1 and ascii labels read as
windows-1252, as mail clients do; UTF-8 tried first when the label is absent or wrong), RFC 2047
encoded words, and raw 8-bit header bytes."""

from __future__ import annotations

import codecs
import email.header

from mailbot.mail.limits import _Defects


def _unsurrogate(text: str) -> str:
    """Raw 8-bit header bytes (kept as surrogates by compat32): UTF-8, else windows-1252."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _charset_codec(charset: str | None) -> str | None:
    """A text codec for a declared charset; latin-1 and ascii labels read as windows-1252,
    a superset, as mail clients do (Outlook labels its en dash =96 iso-8859-1)."""
    name = (charset or "").strip().lower()
    if name in ("", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1"):
        return "cp1252"
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a NUL in the name
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


def _decode_bytes(data: bytes, charset: str | None) -> tuple[str, bool]:
    """(text, charset was usable). UTF-8 is tried first when the label is absent or wrong."""
    codec = _charset_codec(charset)
    if codec in (None, "cp1252"):
        try:
            return data.decode("utf-8"), codec is not None
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace"), codec is not None
    try:
        return data.decode(codec, "replace"), True
    except Exception:  # noqa: BLE001 - codecs like idna or undefined refuse "replace"
        return data.decode("cp1252", "replace"), False


def _decode_words(value: str, defects: _Defects | None = None) -> str:
    """RFC 2047 encoded words -> text (adjacent words joined first, so split multi-byte
    characters survive)."""
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except Exception:  # noqa: BLE001 - HeaderParseError and friends: keep the text as is
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            out.append(chunk.decode("raw-unicode-escape", "replace"))
        else:
            text, known = _decode_bytes(chunk, charset)
            if not known and defects is not None:
                defects.add("unknown charset in header")
            out.append(text)
    return "".join(out)
