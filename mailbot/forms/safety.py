"""Decide, before openpyxl parses anything, whether a file is a workbook that is safe to open.

Pure: bytes in, `UnreadableForm` with a one-sentence reason out (or nothing). The sizes a zip
declares are what Python's zipfile will read at most (it stops there and fails the CRC), so
checking them bounds the bytes the parse can read; counting the XML elements (expat, streaming,
no tree) bounds what openpyxl would build out of those bytes.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from xml.parsers import expat

from mailbot.errors import UnreadableForm
from mailbot.forms.rules import Limits

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SIGNATURES = (
    (b"%PDF", "it is a PDF document, not the Excel workbook"),
    (b"\xff\xd8\xff", "it is a JPEG picture, not the Excel workbook"),
    (b"\x89PNG", "it is a PNG picture, not the Excel workbook"),
    (b"GIF8", "it is a GIF picture, not the Excel workbook"),
    (b"II*\x00", "it is a TIFF picture, not the Excel workbook"),
    (b"MM\x00*", "it is a TIFF picture, not the Excel workbook"),
    (b"{\\rtf", "it is an RTF document, not the Excel workbook"),
)
_MACRO_TYPES = (b"macroEnabled", b"vbaProject")
_WORKBOOK_PARTS = ("xl/workbook.xml", "xl/workbook.bin")
# XML elements in all parts together. The filled form has ~800, one saved by Excel a few thousand.
# openpyxl spends 2-25 µs and up to ~700 bytes on each element it builds (a row's cells are all
# built before a read can stop; styles and validations are built whole), so an 8 MB part within
# the size limits could still cost seconds and GBs: 25,000 elements stay under ~0.7 s and ~25 MB.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError)
ENTITIES_REASON = "the workbook contains forbidden XML constructs (entities), a known attack; it is refused"


def _utf16(name: str) -> bytes:
    return name.encode("utf-16-le")


def sniff_ole2(data: bytes) -> str:
    """An OLE2 compound file is either an encrypted OOXML workbook or an old .xls."""
    if _utf16("EncryptedPackage") in data or _utf16("EncryptionInfo") in data:
        return "the workbook is protected by a password (encrypted); send it without a password"
    if _utf16("Workbook") in data or _utf16("Book") in data:
        return "it is an old Excel 97-2003 (.xls) file; save it as an Excel workbook (.xlsx)"
    return "it is an OLE2 (old Office) file, not an Excel .xlsx workbook"


def check_container(data: bytes, limits: Limits) -> None:
    """Raise `UnreadableForm` unless `data` is an .xlsx zip that can be parsed within limits."""
    if len(data) > limits.max_file_bytes:
        raise UnreadableForm(
            f"the file is {len(data) // 1_000_000} MB, more than the {limits.max_file_bytes // 1_000_000} MB "
            "an order form can be; send the form alone")
    if not data:
        raise UnreadableForm("the file is empty")
    if data.startswith(_OLE2):
        raise UnreadableForm(sniff_ole2(data))
    for magic, reason in _SIGNATURES:
        if data.startswith(magic):
            raise UnreadableForm(reason)
    if not data.startswith(b"PK"):
        raise UnreadableForm("it is not an Excel workbook (.xlsx)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (ValueError, *_ZIP_ERRORS) as exc:
        raise UnreadableForm(f"the workbook is damaged and cannot be opened ({exc})") from exc
    with archive:
        try:
            _check_parts(archive, infos, limits)
        # a part's data cannot be inflated (bad CRC, method, version...), or a local header lies
        # before the file (bytes lost before the central directory: "negative seek value")
        except (ValueError, *_ZIP_ERRORS) as exc:
            raise UnreadableForm(f"the workbook is damaged and cannot be opened ({exc})") from exc


def _check_parts(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(infos) > limits.max_parts:
        raise UnreadableForm(f"the workbook has {len(infos)} parts, far more than an order form; it is refused")
    names = {i.filename for i in infos}
    total = 0
    for info in infos:
        total += info.file_size
        if info.flag_bits & 0x1:
            raise UnreadableForm("the workbook's parts are encrypted; send it without a password")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1_000_000 and ratio > limits.max_ratio:
            raise UnreadableForm(
                f"the part {info.filename} would expand {int(ratio)} times (a decompression bomb); it is refused")
        if info.filename.endswith((".xml", ".rels")) and info.file_size > limits.max_xml_part_bytes:
            raise UnreadableForm(
                f"the part {info.filename} is {info.file_size // 1_000_000} MB uncompressed, "
                "far more than an order form; it is refused")
    if total > limits.max_uncompressed_bytes:
        raise UnreadableForm(
            f"the workbook expands to {total // 1_000_000} MB, far more than an order form; it is refused")
    if "[Content_Types].xml" not in names or not names.intersection(_WORKBOOK_PARTS):
        if "word/document.xml" in names:
            raise UnreadableForm("it is a Word document, not the Excel workbook")
        raise UnreadableForm("it is a zip archive, not an Excel workbook (.xlsx)")
    if "xl/workbook.bin" in names:
        raise UnreadableForm("it is a binary Excel workbook (.xlsb); save it as an Excel workbook (.xlsx)")
    content_types = archive.read("[Content_Types].xml")
    if any(n.startswith("xl/vbaProject") for n in names) or any(m in content_types for m in _MACRO_TYPES):
        raise UnreadableForm(
            "the workbook contains macros (.xlsm), which are refused for safety; "
            "save it as an Excel workbook (.xlsx) without macros")
    _check_xml_elements(archive, infos, limits.max_xml_elements)


class _TooMany(Exception):
    pass


class _Entity(Exception):
    pass


def _check_xml_elements(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], most: int) -> None:
    """Count the elements of every XML part with expat (streaming, no tree) and refuse entity
    declarations; a part that is not well-formed stops its count where any parser would stop."""
    left = most

    def start(name: str, attrs: object) -> None:
        nonlocal left
        left -= 1
        if left < 0:
            raise _TooMany

    def entity(*args: object) -> None:
        raise _Entity

    for info in infos:
        if info.is_dir():
            continue
        parser = expat.ParserCreate()
        parser.StartElementHandler = start
        parser.EntityDeclHandler = entity
        try:
            with archive.open(info) as part:
                while chunk := part.read(1 << 16):
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
        except expat.ExpatError:
            continue
        except _TooMany:
            raise UnreadableForm(
                f"the workbook holds more than {most:,} XML elements, far more than an order form; "
                "it is refused") from None
        except _Entity:
            raise UnreadableForm(ENTITIES_REASON) from None
