"""winmail.dat (TNEF, Outlook's rich-text wrapper): the files inside (`_tnef_files`), read by
tnefparse behind a framing and bounds check of our own, with a content type guessed from
each file's name."""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import os
import struct

from tnefparse.codepage import Codepage
from tnefparse.tnef import TNEF

from mailbot.mail.charsets import _decode_bytes
from mailbot.mail.filenames import safe_filename
from mailbot.mail.limits import MailLimits, _Defects, _safe
from mailbot.mail.model import Attachment

_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

# tnefparse trusts the counts it reads (a property count of 4 billion spins; each object
# re-slices the rest of the stream), so objects are framed here first, each attachment is
# handed to tnefparse alone with only the objects that describe it, and its MAPI properties
# are checked against the bytes they claim before tnefparse reads them.

_TNEF_SIGNATURE = 0x223E9F78
_TNEF_MAX_OBJECTS = 5_000
_ATT_REND_DATA, _ATT_TITLE, _ATT_DATA, _ATT_MAPI, _ATT_CODEPAGE = 0x9002, 0x8010, 0x800F, 0x9005, 0x9007
_IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"
_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


def _tnef_object(level: int, name: int, data: bytes) -> bytes:
    return (bytes([level]) + _U16.pack(name) + _U16.pack(6) + _U32.pack(len(data)) + data
            + _U16.pack(sum(data) & 0xFFFF))


def _tnef_files(data: bytes, limits: MailLimits, defects: _Defects) -> list[Attachment]:
    """The files inside a winmail.dat; [] (and a defect) when it cannot be read."""
    try:
        groups, codepage = _tnef_groups(data, defects)
    except (struct.error, ValueError):
        defects.add("winmail.dat: unreadable TNEF")
        return []
    files: list[Attachment] = []
    head = _U32.pack(_TNEF_SIGNATURE) + b"\0\0" + _tnef_object(1, _ATT_CODEPAGE, codepage)
    for group in groups[:limits.max_parts]:
        try:
            # two bytes of padding: tnefparse skips a last object that ends the stream exactly
            files.extend(_tnef_file(head + b"".join(group) + b"\0\0", limits, defects))
        except Exception:  # noqa: BLE001 - tnefparse on hostile bytes
            defects.add("winmail.dat: unreadable attachment")
    return files


def _tnef_groups(data: bytes, defects: _Defects) -> tuple[list[list[bytes]], bytes]:
    """Frame the objects; group the attachment-level ones that describe each file."""
    if len(data) < 6 or _U32.unpack_from(data, 0)[0] != _TNEF_SIGNATURE:
        raise ValueError("not TNEF")
    view = memoryview(data)
    groups: list[list[bytes]] = []
    codepage = _U32.pack(1252) + _U32.pack(0)
    pos, count = 6, 0
    while pos + 11 <= len(data):
        count += 1
        if count > _TNEF_MAX_OBJECTS:
            defects.add("winmail.dat: too many objects")
            break
        level, name = data[pos], _U16.unpack_from(data, pos + 1)[0]
        length = _U32.unpack_from(data, pos + 5)[0]
        end = pos + 9 + length + 2
        if end > len(data):
            defects.add("winmail.dat: truncated TNEF")
            break
        body = view[pos + 9:pos + 9 + length]
        if level == 1 and name == _ATT_CODEPAGE and length >= 4:
            cp = _U32.unpack_from(body, 0)[0]
            if _safe(lambda: codecs.lookup(Codepage(cp).codepage()), None):  # noqa: B023 - called at once
                codepage = _U32.pack(cp) + _U32.pack(0)
        elif level == 2 and name == _ATT_REND_DATA:
            groups.append([bytes(view[pos:end])])
        elif level == 2 and groups and name in (_ATT_TITLE, _ATT_DATA):
            groups[-1].append(bytes(view[pos:end]))
        elif level == 2 and groups and name == _ATT_MAPI:
            if _IMESSAGE_SIG in body:
                defects.add("winmail.dat: embedded message skipped")
            elif _mapi_sane(bytes(body)):
                groups[-1].append(bytes(view[pos:end]))
            else:
                defects.add("winmail.dat: unreadable attachment properties")
        pos = end
    else:
        if pos < len(data):
            defects.add("winmail.dat: truncated TNEF")
    if not groups:
        defects.add("winmail.dat: no file inside")
    return groups, codepage


def _tnef_file(stream: bytes, limits: MailLimits, defects: _Defects) -> list[Attachment]:
    files = []
    for att in TNEF(stream, do_checksum=False).attachments:
        payload = att.data if isinstance(att.data, bytes) else b""
        name = _safe(att.long_filename, "") or _safe(lambda: att.name, "")  # noqa: B023 - called at once
        if isinstance(name, bytes):
            name = _decode_bytes(name.rstrip(b"\0"), None)[0]
        if not payload and not name:
            continue  # an entry without a file (an OLE object, or properties we refused)
        size = len(payload)
        if size > limits.max_attachment_bytes:
            defects.add("attachment over size limit: skipped")
        filename = safe_filename(str(name), limits.max_filename_chars)
        files.append(Attachment(
            filename=filename, content_type=_guess_type(filename), size=size,
            sha256=hashlib.sha256(payload).hexdigest(),
            data=payload if size <= limits.max_attachment_bytes else b"", origin="tnef"))
    return files


# TNEF gives no content type. The stdlib's built-in table only (not the host's files, so the
# answer is the same everywhere), plus the office formats it lacks.
_MIMETYPES = mimetypes.MimeTypes(filenames=())
_OFFICE_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".msg": "application/vnd.ms-outlook", ".p7m": "application/pkcs7-mime",
}


def _guess_type(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    guess = _OFFICE_TYPES.get(ext) or _MIMETYPES.guess_type("x" + ext, strict=False)[0]
    return (guess or "application/octet-stream").lower()


_FIXED_MAPI = {0x2: 2, 0xB: 2, 0x3: 4, 0x4: 4, 0xA: 4, 0x5: 8, 0x6: 8, 0x7: 8, 0x14: 8,
               0x40: 8, 0x48: 16}
_VARIABLE_MAPI = frozenset({0x0, 0xD, 0x1E, 0x1F, 0x102})


def _mapi_sane(d: bytes) -> bool:
    """Walk a MAPI property block as tnefparse's decode_mapi does, checking every count and
    length against the bytes left. O(len(d))."""
    n = len(d)
    if n < 4:
        return False
    count, off = _U32.unpack_from(d, 0)[0], 4
    if count > n // 4:
        return False
    for _ in range(count):
        if off + 4 > n:
            return False
        kind, name = _U16.unpack_from(d, off)[0], _U16.unpack_from(d, off + 2)[0]
        off += 4
        if name >= 0x8000:  # named property: GUID, then an id or a name
            if off + 20 > n:
                return False
            named = _U32.unpack_from(d, off + 16)[0]
            off += 20
            if named == 0:
                off += 4
            else:
                if off + 4 > n:
                    return False
                length = _U32.unpack_from(d, off)[0]
                off += 4 + length + (-length % 4)
        values, multi = 1, bool(kind & 0x1000)
        if multi:
            kind ^= 0x1000
            if off + 4 > n:
                return False
            values = _U32.unpack_from(d, off)[0]
            off += 4
            if values > n - off:
                return False
        for _ in range(values):
            if kind in _FIXED_MAPI:
                off += _FIXED_MAPI[kind]
            elif kind in _VARIABLE_MAPI:
                items = 1
                if not multi:
                    if off + 4 > n:
                        return False
                    items = _U32.unpack_from(d, off)[0]
                    off += 4
                    if items > (n - off) // 4:
                        return False
                for _ in range(items):
                    if off + 4 > n:
                        return False
                    length = _U32.unpack_from(d, off)[0]
                    off += 4 + length + (-length % 4)
                    if off > n:
                        return False
            else:
                return False
            if off > n:
                return False
        if values % 2 and kind in (0x2, 0xB):
            off += 2
    return off <= n
