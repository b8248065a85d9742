"""Real PDFs for the tests of the PDF reading bounds: text pages with Flate-compressed content
streams (as every PDF writer makes them), and a decompression bomb of the same build.
(Import it as `pdfs`: pytest puts tests/ on sys.path.)"""

import zlib

WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()


def text_pdf(pages: list[list[str]], title: str = "") -> bytes:
    """A PDF of one page per list of lines (Helvetica, one line under another)."""
    streams = []
    for lines in pages:
        ops = [b"BT /F1 11 Tf 14 TL 50 800 Td"]
        for line in lines:
            safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"(" + safe.encode("latin-1") + b") Tj T*")
        ops.append(b"ET")
        streams.append(zlib.compress(b"\n".join(ops), 9))
    count = len(streams)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(count))
               + b"] /Count %d >>" % count,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Title (" + title.encode("latin-1") + b") /Producer (tests/pdfs.py) >>"]
    for i, data in enumerate(streams):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % (6 + 2 * i))
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def filler_lines(chars: int, every: int = 200) -> list[str]:
    """About `chars` characters of text in lines of words, a numbered line every `every` lines
    (so that it does not compress to nothing)."""
    line = " ".join(WORDS * 3)
    out, size = [], 0
    while size < chars:
        n = len(out)
        out.append(line if n % every else f"{line} {n * 7919 % 10**8:08d}")
        size += len(out[-1])
    return out


def bomb_pdf(megabytes: int = 30) -> bytes:
    """The attack of issue 10: one page whose content stream inflates to `megabytes` MB of text
    (an ~85 KB file for 30 MB)."""
    return text_pdf([filler_lines(megabytes * 1_000_000)])
