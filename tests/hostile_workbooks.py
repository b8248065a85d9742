"""Builders of hostile files that pretend to be (or hide inside) an order form.

Every file is built in code from the filled reference form (`fill_form`) or from raw bytes,
so no binary is committed. Each builder returns the bytes of one real instance of an attack;
the large ones stream their content through zipfile so that building them stays light, and
are cached (building the 200 MB bomb costs ~0.5 s once).

Plain module, imported by tests/test_hostile_forms.py and bench/check_form.py.
"""

from __future__ import annotations

import functools
import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping

from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form

FORM_RULES = load_rules()

SHEET = "xl/worksheets/sheet1.xml"
CONTENT_TYPES = "[Content_Types].xml"
WORKBOOK = "xl/workbook.xml"
WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SML_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"

TITLES = {
    "fr": "Bon de commande – ePayment BOSA M1036 – Worldline – Version {}",
    "nl": "Bestelbon – ePayment BOSA M1036 – Worldline – Versie {}",
}


# --- the valid starting point -------------------------------------------------------------

@functools.cache
def form(language: str = "fr") -> bytes:
    """A complete, valid filled form (the base every zip attack is grafted onto)."""
    return fill_form(language, complete_values(language), rules=FORM_RULES)


def read_part(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def rewrite(data: bytes, replace: Mapping[str, bytes | Callable[[bytes], bytes]] | None = None,
            add: Mapping[str, bytes] | None = None, stored: Iterable[str] = ()) -> bytes:
    """A copy of the zip `data` with parts replaced (bytes, or a function of the old bytes),
    parts added at the end, and the parts named in `stored` written uncompressed."""
    replace, add, stored = dict(replace or {}), dict(add or {}), set(stored)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename in replace:
                new = replace[info.filename]
                body = new(body) if callable(new) else new
            dst.writestr(info.filename, body, compress_type=_method(info.filename, stored))
        for name, body in add.items():
            dst.writestr(name, body, compress_type=_method(name, stored))
    return out.getvalue()


def _method(name: str, stored: set[str]) -> int:
    return zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED


def add_override(content_types: bytes, part: str, content_type: str) -> bytes:
    entry = f'<Override PartName="/{part}" ContentType="{content_type}"/>'.encode()
    return content_types.replace(b"</Types>", entry + b"</Types>")


def add_default(content_types: bytes, extension: str, content_type: str) -> bytes:
    entry = f'<Default Extension="{extension}" ContentType="{content_type}"/>'.encode()
    return content_types.replace(b"</Types>", entry + b"</Types>")


def add_relationship(rels: bytes, rel_id: str, rel_type: str, target: str, external: bool = False) -> bytes:
    mode = ' TargetMode="External"' if external else ""
    entry = f'<Relationship Id="{rel_id}" Type="{rel_type}" Target="{target}"{mode}/>'.encode()
    return rels.replace(b"</Relationships>", entry + b"</Relationships>")


# --- decompression bombs and forged zip headers --------------------------------------------

def _stream_part(data: bytes, name: str, head: bytes, filler: bytes, size: int, tail: bytes,
                 chunk: int = 1 << 20) -> bytes:
    """The zip `data` with part `name` (replaced, or added at the end) holding `head`, then
    `size` bytes of `filler`, then `tail`: deflated chunk by chunk, never whole in memory."""
    block = filler * (chunk // len(filler))

    def write(dst: zipfile.ZipFile) -> None:
        info = zipfile.ZipInfo(name, date_time=(2026, 11, 2, 9, 30, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(info, "w") as part:
            part.write(head)
            left = size
            while left > 0:
                piece = block[: min(left, len(block))]
                part.write(piece)
                left -= len(piece)
            part.write(tail)

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        names = src.namelist()
        for info in src.infolist():
            if info.filename == name:
                write(dst)
            else:
                dst.writestr(info, src.read(info.filename))
        if name not in names:
            write(dst)
    return out.getvalue()


def _padded_sheet(data: bytes, filler: bytes, size: int) -> bytes:
    """The form with `size` bytes of `filler` between <sheetData> and the first row (whitespace
    there keeps the sheet well-formed)."""
    head, sep, tail = read_part(data, SHEET).partition(b"<sheetData>")
    assert sep, "the sheet has no <sheetData>"
    return _stream_part(data, SHEET, head + sep, filler, size, tail)


@functools.cache
def decompression_bomb(size: int = 200_000_000, part: str = SHEET) -> bytes:
    """A valid-looking form whose sheet XML expands to `size` bytes of whitespace (~1000:1, so
    ~200 KB zipped), or, with another `part`, that carries an extra part of `size` zero bytes."""
    if part == SHEET:
        return _padded_sheet(form(), b" ", size)
    return _stream_part(form(), part, b"", b"\0", size, b"")


def inflated_size(data: bytes, name: str) -> int:
    """What the deflated data of part `name` really inflates to, whatever its headers declare
    (counted 1 MB at a time, so a bomb can be measured without holding it)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    pending = data[start: start + info.compress_size]
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    while pending:
        total += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
    return total + len(inflater.flush())


def forge_sizes(data: bytes, name: str, file_size: int) -> bytes:
    """The zip with the uncompressed size of `name` set to `file_size` in both its local header
    and its central directory entry (the CRC and the compressed data are left as they are)."""
    buf = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    assert not info.flag_bits & 0x8, "sizes in a data descriptor are not handled"
    local = info.header_offset
    assert buf[local:local + 4] == b"PK\x03\x04"
    struct.pack_into("<I", buf, local + 22, file_size)
    encoded = name.encode()
    pos = 0
    while (pos := buf.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", buf, pos + 28)[0]
        if bytes(buf[pos + 46: pos + 46 + name_len]) == encoded:
            struct.pack_into("<I", buf, pos + 24, file_size)
            return bytes(buf)
        pos += 4
    raise AssertionError(f"no central directory entry for {name}")


@functools.cache
def forged_size(actual: int = 50_000_000) -> bytes:
    """A form whose sheet really inflates to `actual` bytes but whose zip headers declare the
    original, small size: the ratio and size checks see an ordinary part."""
    data = form()
    declared = len(read_part(data, SHEET))
    return forge_sizes(_padded_sheet(data, b" ", actual), SHEET, declared)


def wide_row(cells: int = 1_900_000) -> bytes:
    """Within the size limits and stored (ratio 1): the title row also holds `cells` empty
    cells, ~8 MB of `<c/>`. A parser that builds every cell of a row costs ~300 bytes each."""
    return rewrite(form(), replace={SHEET: lambda s: s.replace(b"</row>", b"<c/>" * cells + b"</row>", 1)},
                   stored={SHEET})


def repeated_rows(rows: int = 600_000) -> bytes:
    """Within the size limits and stored: the last row repeated `rows` times with the same number,
    so a reader that stops after row N never stops."""
    def pad(sheet: bytes) -> bytes:
        last = re.findall(rb'<row r="(\d+)"', sheet)[-1]
        return sheet.replace(b"</sheetData>", b'<row r="%s"/>' % last * rows + b"</sheetData>", 1)
    return rewrite(form(), replace={SHEET: pad}, stored={SHEET})


def many_styles(count: int = 120_000) -> bytes:
    """Within the size limits and stored: styles.xml with `count` cell formats (~8 MB)."""
    xf = b'<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    def pad(styles: bytes) -> bytes:
        return re.sub(rb'<cellXfs count="(\d+)">', lambda m: b'<cellXfs count="%d">' % (int(m[1]) + count) + xf * count,
                      styles, count=1)
    return rewrite(form(), replace={"xl/styles.xml": pad}, stored={"xl/styles.xml"})


# --- XML entity attacks --------------------------------------------------------------------

def _laughs_dtd(root: str) -> bytes:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)]
    return f'<?xml version="1.0"?>\n<!DOCTYPE {root} [\n' .encode() + "\n".join(entities).encode() + b"\n]>\n"


def billion_laughs(where: str = "sheet") -> bytes:
    """Nested entities (10^9 `lol`s) in the sheet XML or in a shared-strings part."""
    if where == "sheet":
        def poison(sheet: bytes) -> bytes:
            sheet = sheet.replace("M1036 – Worldline".encode(), "M1036 – &lol9; – Worldline".encode(), 1)
            return _laughs_dtd("worksheet") + sheet
        return rewrite(form(), replace={SHEET: poison})
    sst = _laughs_dtd("sst") + (b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
                                b' count="1" uniqueCount="1"><si><t>&lol9;</t></si></sst>')
    return rewrite(form(), replace={
        CONTENT_TYPES: lambda ct: add_override(ct, "xl/sharedStrings.xml", f"{SML_CT}.sharedStrings+xml"),
        WORKBOOK_RELS: lambda rels: add_relationship(rels, "rId90", f"{REL}/sharedStrings", "sharedStrings.xml"),
    }, add={"xl/sharedStrings.xml": sst})


def external_entity(url: str) -> bytes:
    """XXE: the sheet declares an external entity fetched from `url` and uses it in a cell."""
    def poison(sheet: bytes) -> bytes:
        dtd = f'<?xml version="1.0"?>\n<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "{url}">]>\n'.encode()
        return dtd + sheet.replace("M1036 – Worldline".encode(), "M1036 – &xxe; – Worldline".encode(), 1)
    return rewrite(form(), replace={SHEET: poison})


# --- the sheet's extent --------------------------------------------------------------------

def forged_dimension() -> bytes:
    """A complete form whose sheet claims to span every cell Excel allows (A1:XFD1048576)."""
    return rewrite(form(), replace={SHEET: lambda s: re.sub(
        rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1:XFD1048576"/>', s, count=1)})


def far_cell(row: int = 1_000_000) -> bytes:
    """A complete form with a real cell at row `row`, column XFD (and the dimension saying so)."""
    cell = f'<row r="{row}"><c r="XFD{row}" t="inlineStr"><is><t>far away</t></is></c></row>'.encode()
    return rewrite(form(), replace={SHEET: lambda s: re.sub(
        rb'<dimension ref="([A-Z]+1):[^"]*"\s*/>', b'<dimension ref="A1:XFD%d"/>' % row, s, count=1
    ).replace(b"</sheetData>", cell + b"</sheetData>", 1)})


# --- OLE2 compound files (encrypted workbooks, .xls, VBA projects) -------------------------

_FREE, _END, _FAT_SECTOR, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def ole2(streams: Mapping[str, bytes]) -> bytes:
    """A minimal valid OLE2 compound file (CFB v3, 512-byte sectors) with `streams` at its root.

    Each stream is padded to the 4096-byte mini-stream cutoff so it lives in regular sectors
    and no mini FAT is needed; the streams are chained as right siblings in CFB name order."""
    entries = [(name, body.ljust(4096, b"\0")) for name, body in streams.items()]
    entries.sort(key=lambda e: (len(e[0]), e[0].upper()))
    dir_count = len(entries) + 1
    dir_sectors = -(-dir_count // 4)
    sectors_of = [-(-len(body) // 512) for _, body in entries]
    total = 1 + dir_sectors + sum(sectors_of)
    assert total <= 128, "one FAT sector maps at most 128 sectors"
    fat = [_FREE] * 128
    fat[0] = _FAT_SECTOR
    next_sector = 1
    for count in [dir_sectors, *sectors_of]:
        for i in range(count):
            fat[next_sector + i] = next_sector + i + 1 if i < count - 1 else _END
        next_sector += count
    header = bytearray(512)
    header[0:8] = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    struct.pack_into("<HHHHH", header, 24, 0x003E, 0x0003, 0xFFFE, 9, 6)
    struct.pack_into("<IIIIIIIII", header, 40, 0, 1, 1, 0, 0x1000, _END, 0, _END, 0)
    difat = [0] + [_FREE] * 108
    struct.pack_into("<109I", header, 76, *difat)

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0"
        e = bytearray(128)
        e[0:len(raw)] = raw
        struct.pack_into("<HBBIII", e, 64, len(raw), kind, 1, _NONE, right, child)
        struct.pack_into("<IQ", e, 116, start, size)
        return bytes(e)

    directory = [entry("Root Entry", 5, _NONE, 1 if entries else _NONE, _END, 0)]
    start = 1 + dir_sectors
    for i, ((name, body), count) in enumerate(zip(entries, sectors_of, strict=True), start=1):
        right = i + 1 if i < len(entries) else _NONE
        directory.append(entry(name, 2, right, _NONE, start, len(body)))
        start += count
    unused = bytearray(128)
    struct.pack_into("<III", unused, 68, _NONE, _NONE, _NONE)
    directory += [bytes(unused)] * (dir_sectors * 4 - len(directory))
    body = b"".join(b.ljust(n * 512, b"\0") for (_, b), n in zip(entries, sectors_of, strict=True))
    return bytes(header) + struct.pack("<128I", *fat) + b"".join(directory) + body


def encrypted_workbook() -> bytes:
    """What Excel writes for a workbook saved with a password: an OLE2 file with an agile
    EncryptionInfo stream and the encrypted zip in EncryptedPackage."""
    info = (struct.pack("<HHI", 4, 4, 0x40) + b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
            b'<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption">'
            b'<keyData saltSize="16" blockSize="16" keyBits="256" hashSize="64" cipherAlgorithm="AES" '
            b'cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512" saltValue="AAAAAAAAAAAAAAAAAAAAAA=="/>'
            b"</encryption>")
    package = form()
    ciphertext = random.Random(7).randbytes(len(package) + (-len(package)) % 16)
    return ole2({"EncryptionInfo": info, "EncryptedPackage": struct.pack("<Q", len(package)) + ciphertext})


def xls_workbook() -> bytes:
    """An Excel 97-2003 file: OLE2 with a BIFF8 `Workbook` stream (BOF ... EOF)."""
    bof = struct.pack("<HHHHHHII", 0x0809, 16, 0x0600, 0x0005, 0x0DBB, 0x07CC, 0, 0x0206)
    eof = struct.pack("<HH", 0x000A, 0)
    return ole2({"Workbook": bof + eof, "\x05SummaryInformation": b"\xfe\xff\x00\x00"})


def macro_workbook(part: str = "xl/vbaProject.bin") -> bytes:
    """An .xlsm: the form with a VBA project part, its relationship and the macro-enabled
    workbook content type (as Excel saves it). `part` may hide the project under another name."""
    vba = ole2({"PROJECT": b'ID="{00000000-0000-0000-0000-000000000000}"\r\nModule=Module1\r\n',
                "PROJECTwm": b"Module1\0M\0o\0d\0u\0l\0e\0\x31\0\0\0"})
    target = part.removeprefix("xl/")

    def content_types(ct: bytes) -> bytes:
        ct = ct.replace(f"{SML_CT}.sheet.main+xml".encode(), b"application/vnd.ms-excel.sheet.macroEnabled.main+xml")
        return add_override(ct, part, "application/vnd.ms-office.vbaProject")
    return rewrite(form(), replace={
        CONTENT_TYPES: content_types,
        WORKBOOK_RELS: lambda rels: add_relationship(
            rels, "rId91", "http://schemas.microsoft.com/office/2006/relationships/vbaProject", target),
    }, add={part: vba})


# --- external links ------------------------------------------------------------------------

def external_link(url: str) -> bytes:
    """The form with an external workbook link (xl/externalLinks/externalLink1.xml) whose
    target is `url`, wired in as Excel does: part, its rels, the workbook's rels,
    <externalReferences> and the content type."""
    link = ('<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            f'xmlns:r="{REL}"><externalBook r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames>'
            '<sheetDataSet><sheetData sheetId="0"><row r="1"><cell r="A1" t="str"><v>x</v></cell></row>'
            '</sheetData></sheetDataSet></externalBook></externalLink>').encode()
    link_rels = add_relationship(
        b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"></Relationships>',
        "rId1", f"{REL}/externalLinkPath", url, external=True)
    return rewrite(form(), replace={
        CONTENT_TYPES: lambda ct: add_override(ct, "xl/externalLinks/externalLink1.xml", f"{SML_CT}.externalLink+xml"),
        WORKBOOK_RELS: lambda rels: add_relationship(rels, "rId92", f"{REL}/externalLink", "externalLinks/externalLink1.xml"),
        WORKBOOK: lambda wb: wb.replace(b"</sheets>", b'</sheets><externalReferences><externalReference r:id="rId92"/>'
                                                    b"</externalReferences>", 1),
    }, add={"xl/externalLinks/externalLink1.xml": link,
            "xl/externalLinks/_rels/externalLink1.xml.rels": link_rels})


# --- not a workbook at all -----------------------------------------------------------------

def pdf() -> bytes:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def png() -> bytes:
    """A real 1x1 white PNG."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff")) + chunk(b"IEND", b""))


def jpeg() -> bytes:
    """The start of a JFIF JPEG (SOI, APP0) and its end marker."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def random_bytes(size: int = 64_000, seed: int = 1036) -> bytes:
    return random.Random(seed).randbytes(size)


def truncated(fraction: float = 0.5) -> bytes:
    data = form()
    return data[: int(len(data) * fraction)]


def docx() -> bytes:
    """A minimal Word document (.docx): an OOXML zip without a workbook."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(CONTENT_TYPES, '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("_rels/.rels", '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="word/document.xml"/></Relationships>')
        z.writestr("word/document.xml", '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                   "<w:body><w:p><w:r><w:t>Bon de commande</w:t></w:r></w:p></w:body></w:document>")
    return out.getvalue()


# --- other workbooks -----------------------------------------------------------------------

def other_form() -> bytes:
    """Another organisation's order form: a title without M1036 and none of this form's labels."""
    import openpyxl
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Bon de commande"
    sheet["B1"] = "Bon de commande – Fournitures de bureau – Version 2.2"
    for row, (label, value) in enumerate([("Article", "Papier A4"), ("Quantité", 40), ("Prix unitaire", 4.5),
                                          ("Service demandeur", "Économat"), ("Date", "15/01/2027")], start=3):
        sheet.cell(row, 2, label)
        sheet.cell(row, 3, value)
    book.properties.title = sheet["B1"].value
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def wrong_version(language: str = "fr", version: str = "2.1") -> bytes:
    """A complete order form of another version (title in B1 and in the document properties)."""
    return fill_form(language, complete_values(language), title=TITLES[language].format(version), rules=FORM_RULES)
