"""Hostile files sent as the order form.

Each case builds a real instance of an attack in code (tests/hostile_workbooks.py) and checks
that `check_form` either refuses it with one form-level problem and a one-sentence reason, or
checks it as the form it also is, within bounded time and memory. The issue asks for "within a
second and ~100 MB"; the bounds asserted here are generous (5 s, 150 MB of Python allocations
traced by tracemalloc) so that a slow CI machine does not fail them, and only hostile inputs
are bounded: the speed of ordinary checks is measured by bench/check_form.py, not asserted.
"""

from __future__ import annotations

import io
import re
import select
import socket
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hostile_workbooks as hw  # tests/ is on sys.path (pytest's rootdir-relative import)
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import mailbot.forms.workbook as workbook_module
from mailbot.forms import FormCheck, check_form, load_rules

HOSTILE_SECONDS = 5.0
HOSTILE_PEAK_BYTES = 150_000_000
FORM_CODES = {"unreadable", "not_an_order_form", "wrong_version"}
RULES = load_rules()
LIMITS = RULES.limits


@dataclass(frozen=True)
class Run:
    result: FormCheck
    seconds: float
    peak_bytes: int


def run(source: bytes | Path, name: str | None = None) -> Run:
    """check_form, timed with perf_counter and its allocations traced by tracemalloc."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = check_form(source, name=name, rules=RULES)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return Run(result, seconds, peak)


def assert_bounded(outcome: Run) -> None:
    assert outcome.seconds < HOSTILE_SECONDS, f"took {outcome.seconds:.2f} s"
    assert outcome.peak_bytes < HOSTILE_PEAK_BYTES, f"peaked at {outcome.peak_bytes / 1e6:.0f} MB"


def assert_one_sentence(message: str) -> None:
    assert re.fullmatch(r"[A-Z][^\n]*[^.]\.", message), message
    assert not re.search(r"[.!?;]\s+[A-Z]", message), f"more than one sentence: {message}"


def assert_form_problem(outcome: Run, code: str, *words: str) -> None:
    """Exactly one problem, on `form`, with `code`, one sentence mentioning each of `words`."""
    result = outcome.result
    assert result.problem_pairs() == [("form", code)], result.problems
    assert not result.complete and not result.is_order_form
    message = result.problems[0].message
    assert_one_sentence(message)
    for word in words:
        assert word in message.lower(), f"{word!r} not in {message!r}"
    assert_bounded(outcome)


def assert_checked_complete(outcome: Run, language: str = "fr") -> None:
    result = outcome.result
    assert result.problems == () and result.complete, result.problems
    assert (result.language, result.version) == (language, "2.2")
    assert_bounded(outcome)


def as_file(tmp_path: Path, data: bytes, name: str = "Bon de commande_WL_M1036_FR_V2.2.xlsx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def part_sizes(data: bytes) -> dict[str, tuple[int, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: (i.file_size, i.compress_size) for i in archive.infolist()}


# --- a listener that tells whether anything tried to fetch a URL ----------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on an ephemeral loopback port that nobody should connect to."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def url_of(server: socket.socket, path: str) -> str:
    return f"http://127.0.0.1:{server.getsockname()[1]}/{path}"


def was_contacted(server: socket.socket, wait: float = 0.3) -> bool:
    return bool(select.select([server], [], [], wait)[0])


def assert_listener_works(server: socket.socket) -> None:
    """The no-connection assertion means something: a real connection is seen."""
    socket.create_connection(server.getsockname(), timeout=2).close()
    assert was_contacted(server, wait=2)


# --- zip bombs and forged zip headers --------------------------------------------------------

@pytest.mark.parametrize("size, part", [
    (200_000_000, hw.SHEET),  # the sheet XML: 200 MB of whitespace inside <sheetData>
    (5_000_000, hw.SHEET),  # under the XML part and file size limits, refused for its ratio
    (200_000_000, "xl/media/image1.png"),  # 200 MB of zeros in a part openpyxl never reads
], ids=["sheet-200MB", "sheet-5MB", "media-200MB"])
def test_decompression_bomb_is_refused(size: int, part: str) -> None:
    data = hw.decompression_bomb(size, part)
    declared, compressed = part_sizes(data)[part]
    assert declared >= size and declared / compressed > 500  # a real bomb: the part inflates >500:1
    outcome = run(data)
    assert_form_problem(outcome, "unreadable", "bomb")


def test_forged_uncompressed_size_is_refused_without_inflating_it() -> None:
    data = hw.forged_size(50_000_000)
    declared, compressed = part_sizes(data)[hw.SHEET]
    assert declared < 20_000 and hw.inflated_size(data, hw.SHEET) >= 50_000_000  # headers lie
    assert declared / compressed < LIMITS.max_ratio  # the declared sizes pass every size check
    outcome = run(data)
    assert_form_problem(outcome, "unreadable", "damaged")
    assert outcome.peak_bytes < 10_000_000  # it never held the 50 MB


# --- XML entity attacks ----------------------------------------------------------------------

@pytest.mark.parametrize("where", ["sheet", "shared_strings"])
def test_billion_laughs_is_refused(where: str) -> None:
    data = hw.billion_laughs(where)
    name = hw.SHEET if where == "sheet" else "xl/sharedStrings.xml"
    assert b'<!ENTITY lol9 "&lol8;&lol8;' in hw.read_part(data, name)
    assert_form_problem(run(data), "unreadable", "entities")


@pytest.mark.parametrize("where", ["sheet", "shared_strings"])
def test_billion_laughs_is_refused_by_defusedxml_alone(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the container pre-check, openpyxl's defusedxml parsing still refuses it."""
    monkeypatch.setattr(workbook_module, "check_container", lambda data, limits: None)
    assert_form_problem(run(hw.billion_laughs(where)), "unreadable", "entities")


@pytest.mark.parametrize("layer", ["container", "defusedxml"])
def test_external_entity_is_refused_and_never_fetched(layer: str, listener: socket.socket,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if layer == "defusedxml":
        monkeypatch.setattr(workbook_module, "check_container", lambda data, limits: None)
    data = hw.external_entity(url_of(listener, "xxe"))
    assert_form_problem(run(data), "unreadable", "entities")
    assert not was_contacted(listener)
    assert_listener_works(listener)


# --- the sheet's extent ----------------------------------------------------------------------

def read_only_extent(data: bytes) -> tuple[int | None, int | None]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        sheet = book.worksheets[0]
        return sheet.max_row, sheet.max_column
    finally:
        book.close()


def test_forged_dimension_is_checked_normally() -> None:
    data = hw.forged_dimension()
    assert read_only_extent(data) == (1_048_576, 16_384)  # what a naive reader would walk
    assert_checked_complete(run(data))


def test_cell_at_row_one_million_is_checked_normally() -> None:
    data = hw.far_cell(1_000_000)
    assert read_only_extent(data) == (1_000_000, 16_384)
    assert b'<c r="XFD1000000"' in hw.read_part(data, hw.SHEET)
    assert_checked_complete(run(data))


# --- size-limited parts that would still cost seconds and hundreds of MB to parse ------------

@pytest.mark.parametrize("build", [hw.wide_row, hw.repeated_rows, hw.many_styles],
                         ids=["2M-cells-in-a-row", "600k-rows-numbered-alike", "120k-cell-formats"])
def test_within_size_limits_but_too_many_elements_is_refused(build) -> None:
    data = build()
    assert len(data) <= LIMITS.max_file_bytes
    for declared, compressed in part_sizes(data).values():
        assert declared <= LIMITS.max_xml_part_bytes and declared / max(compressed, 1) <= LIMITS.max_ratio
    assert_form_problem(run(data), "unreadable", "elements")


def test_many_cells_under_the_element_budget_are_still_checked() -> None:
    assert_checked_complete(run(hw.wide_row(20_000)))


# --- encrypted, old or other kinds of files named .xlsx ---------------------------------------

def test_encrypted_workbook_is_refused(tmp_path: Path) -> None:
    data = hw.encrypted_workbook()
    assert data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") and "EncryptedPackage".encode("utf-16-le") in data
    outcome = run(as_file(tmp_path, data))
    assert_form_problem(outcome, "unreadable", "password", "encrypted")


@pytest.mark.parametrize("build, words", [
    (hw.xls_workbook, ("97-2003", ".xls")),
    (hw.pdf, ("pdf",)),
    (hw.png, ("png",)),
    (hw.jpeg, ("jpeg",)),
    (hw.random_bytes, ("not an excel workbook",)),
    (lambda: b"", ("empty",)),
    (hw.truncated, ("damaged",)),
    (hw.docx, ("word document",)),
], ids=["xls", "pdf", "png", "jpeg", "random", "empty", "truncated", "docx"])
def test_other_files_named_xlsx_are_unreadable(build, words: tuple[str, ...], tmp_path: Path) -> None:
    path = as_file(tmp_path, build())
    outcome = run(path)
    assert_form_problem(outcome, "unreadable", *words)
    assert outcome.result.file == str(path)


@pytest.mark.parametrize("part", ["xl/vbaProject.bin", "xl/media/image1.bin"], ids=["vbaProject", "renamed"])
def test_macro_workbook_is_refused(part: str) -> None:
    data = hw.macro_workbook(part)
    content_types = hw.read_part(data, hw.CONTENT_TYPES)
    assert b"macroEnabled.main+xml" in content_types and hw.read_part(data, part).startswith(b"\xd0\xcf\x11\xe0")
    assert_form_problem(run(data), "unreadable", "macros")


# --- external links --------------------------------------------------------------------------

def test_external_link_is_not_followed(listener: socket.socket) -> None:
    url = url_of(listener, "evil.xlsx")
    data = hw.external_link(url)
    book = openpyxl.load_workbook(io.BytesIO(data), keep_links=True)  # openpyxl sees the link...
    assert [link.file_link.Target for link in book._external_links] == [url]
    assert_checked_complete(run(data))  # ...the checker checks the form all the same
    assert not was_contacted(listener)
    assert_listener_works(listener)


# --- other workbooks -------------------------------------------------------------------------

def test_workbook_of_another_form_is_not_an_order_form() -> None:
    assert_form_problem(run(hw.other_form()), "not_an_order_form", "m1036")


@pytest.mark.parametrize("language", ["fr", "nl"])
def test_version_2_1_is_the_wrong_version(language: str) -> None:
    outcome = run(hw.wrong_version(language, "2.1"))
    assert_form_problem(outcome, "wrong_version", "2.1")
    assert (outcome.result.language, outcome.result.version) == (language, "2.1")


# --- well-formed XML with values openpyxl cannot use ------------------------------------------

def test_shared_string_index_out_of_range_is_unreadable() -> None:
    """A number cell retyped as a shared string: index 5060 into an empty table (IndexError)."""
    data = hw.rewrite(hw.form(), replace={hw.SHEET: lambda s: s.replace(b't="n"><v>5060</v>', b't="s"><v>5060</v>', 1)})
    assert b't="s"><v>5060</v>' in hw.read_part(data, hw.SHEET)
    assert_form_problem(run(data), "unreadable", "damaged")


def test_huge_style_number_is_unreadable() -> None:
    """A cell format whose numFmtId does not fit a C long (OverflowError in openpyxl)."""
    data = hw.rewrite(hw.form(), replace={"xl/styles.xml": lambda s: re.sub(
        rb'(<cellXfs[^>]*><xf numFmtId=")0"', rb'\g<1>99999999999999999999999"', s, count=1)})
    assert b'numFmtId="99999999999999999999999"' in hw.read_part(data, "xl/styles.xml")
    assert_form_problem(run(data), "unreadable", "damaged")


# --- properties: nothing raises, every result says something --------------------------------

def assert_sound(result: FormCheck) -> None:
    assert result.complete == (not result.problems)
    form_level = [p for p in result.problems if p.field == "form"]
    if form_level:
        assert len(result.problems) == 1 and form_level[0].code in FORM_CODES
        assert_one_sentence(form_level[0].message)


PREFIXES = [b"", b"PK\x03\x04", b"PK\x05\x06", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"%PDF-1.4\n"]


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz(200)
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(prefix: bytes, body: bytes) -> None:
    assert_sound(check_form(prefix + body, rules=RULES))


@fuzz(120)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=6),
       keep=st.one_of(st.none(), st.floats(0, 1)))
def test_flipped_or_truncated_form_never_raises(flips: list[tuple[float, int]], keep: float | None) -> None:
    data = bytearray(hw.form())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if keep is not None:
        del data[int(keep * len(data)):]
    assert_sound(check_form(bytes(data), rules=RULES))


@fuzz(120)
@given(part=st.sampled_from(sorted(part_sizes(hw.form()))),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=6),
       keep=st.one_of(st.none(), st.floats(0, 1)))
def test_mutated_part_with_valid_crc_never_raises(part: str, flips: list[tuple[float, int]], keep: float | None) -> None:
    """Damage one part's XML and re-zip it (valid CRC), so the damage reaches the XML parsers."""
    body = bytearray(hw.read_part(hw.form(), part))
    for where, mask in flips:
        body[int(where * len(body))] ^= mask
    if keep is not None:
        del body[int(keep * len(body)):]
    assert_sound(check_form(hw.rewrite(hw.form(), replace={part: bytes(body)}), rules=RULES))


TRICKY_VALUES = ["", "-1", "0", "1e309", "99999999999999999999999", "nan", "A0", "XFE1", "XFD1048577",
                 "A1:XFD1048576", "C5:A1", "#REF!", "s", "b", "e", "d", "str", "inlineStr", "16385", "é"]
FORM_PARTS = {name: hw.read_part(hw.form(), name).decode() for name in sorted(part_sizes(hw.form()))}
VALUE_SPANS = re.compile(r'="([^"]*)"|>([^<]+)<')


@fuzz(150)
@given(part=st.sampled_from(sorted(FORM_PARTS)),
       edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(TRICKY_VALUES)), min_size=1, max_size=3))
def test_well_formed_form_with_odd_values_never_raises(part: str, edits: list[tuple[float, str]]) -> None:
    """Replace attribute values and texts of one part by odd ones: the XML stays well-formed, so
    openpyxl's conversions (indexes, numbers, references) meet them. Found: an out-of-range
    shared-string index (IndexError) and a huge style id (OverflowError) escaped check_form."""
    body = FORM_PARTS[part]
    for where, value in edits:
        spans = [m.span(1) if m.group(1) is not None else m.span(2) for m in VALUE_SPANS.finditer(body)]
        start, end = spans[int(where * len(spans))]
        body = body[:start] + value + body[end:]
    assert_sound(check_form(hw.rewrite(hw.form(), replace={part: body.encode()}), rules=RULES))
