"""How fast is the order-form checker, against openpyxl alone, and how fast does it refuse attacks?

    .venv/bin/python bench/check_form.py [--seconds 2]

In one run it builds filled forms (FR and NL, complete and with problems) with `fill_form` and
measures:
  (a) forms checked per second by `check_form` on the bytes;
  (b) bare `openpyxl.load_workbook(io.BytesIO(data))` (default options) of the same bytes per
      second, and the ratio checker time / bare load time (the goal is <= 1.5);
  (c) the time `check_form` takes on each hostile kind (tests/hostile_workbooks.py) and the peak
      of Python allocations it makes (tracemalloc, in a separate run: tracing slows it down).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import hostile_workbooks as hw  # noqa: E402
import openpyxl  # noqa: E402

from mailbot.forms import check_form, load_rules  # noqa: E402
from mailbot.forms.builder import complete_values, fill_form  # noqa: E402

FORM_RULES = load_rules()


def sample_forms() -> dict[str, bytes]:
    """Filled forms as clients send them: complete, and with missing or invalid values."""
    return {
        "FR complete": fill_form("fr", complete_values("fr"), rules=FORM_RULES),
        "NL complete": fill_form("nl", complete_values("nl", enterprise_number=207502301, vat_number="BE0207.502.301",
                                                          business_contact_phone=32475123456), rules=FORM_RULES),
        "FR lot 1 only": fill_form("fr", complete_values(
            "fr", lot_2="Non", pm_bancontact=None, pm_visa=None, pm_mastercard=None, settlement_iban=None,
            account_holder=None, expected_yearly_transactions=None, expected_yearly_amount=None), rules=FORM_RULES),
        "FR problems": fill_form("fr", complete_values(
            "fr", expected_yearly_transactions="beaucoup", business_contact_email="Marie <marie@x.be>",
            technical_contact_phone="", settlement_iban="BE71 0961 2345 6760", vat_number="BE 0308.357.159"), rules=FORM_RULES),
        "NL problems": fill_form("nl", complete_values(
            "nl", pm_bancontact=None, pm_visa=None, pm_mastercard=None, shop_url="http://webshop.lier.be",
            postal_code=250, signatory_name=None), rules=FORM_RULES),
        "FR rows inserted": fill_form("fr", complete_values("fr"), insert_rows={4: 3, 20: 2}, rules=FORM_RULES),
        "NL missing rows": fill_form("nl", complete_values("nl"), delete_fields=("billing_reference", "vat_number"), rules=FORM_RULES),
    }


def per_form_seconds(action: Callable[[bytes], object], forms: list[bytes], seconds: float) -> list[float]:
    """Run `action` over all forms again and again for ~`seconds`; the time per form of each pass."""
    for data in forms:  # warm up (imports, caches)
        action(data)
    passes: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(passes) < 3:
        started = time.perf_counter()
        for data in forms:
            action(data)
        passes.append((time.perf_counter() - started) / len(forms))
    return passes


def bare_load(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        openpyxl.load_workbook(io.BytesIO(data)).close()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "decompression bomb (200 MB sheet)": hw.decompression_bomb,
    "forged zip size (50 MB behind 9 KB)": hw.forged_size,
    "billion laughs in the sheet": lambda: hw.billion_laughs("sheet"),
    "billion laughs in shared strings": lambda: hw.billion_laughs("shared_strings"),
    "forged dimension A1:XFD1048576 (checked)": hw.forged_dimension,
    "cell at row 1,000,000 (checked)": hw.far_cell,
    "encrypted workbook (OLE2)": hw.encrypted_workbook,
    "macro workbook (.xlsm)": hw.macro_workbook,
    "2M cells in one row (8 MB stored)": hw.wide_row,
    "120k cell formats (8 MB stored)": hw.many_styles,
    ".xls renamed .xlsx": hw.xls_workbook,
    "truncated .xlsx": hw.truncated,
}


def hostile_figures(repeats: int) -> list[tuple[str, float, float, str]]:
    rows = []
    for kind, build in HOSTILE.items():
        data = build()
        check_form(data, rules=FORM_RULES)  # warm up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            result = check_form(data, rules=FORM_RULES)
            times.append(time.perf_counter() - started)
        tracemalloc.start()
        check_form(data, rules=FORM_RULES)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        outcome = ", ".join(f"{f}:{c}" for f, c in result.problem_pairs()) or "complete"
        rows.append((kind, statistics.median(times), peak, outcome))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each throughput figure")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each hostile file (median shown)")
    args = parser.parse_args()

    forms = sample_forms()
    outcomes = {name: check_form(data, rules=FORM_RULES) for name, data in forms.items()}
    print(f"{len(forms)} forms, {min(map(len, forms.values())):,}-{max(map(len, forms.values())):,} bytes:")
    for name, result in outcomes.items():
        print(f"  {name:18} {'complete' if result.complete else f'{len(result.problems)} problem(s)'}")
    data = list(forms.values())

    checker = per_form_seconds(lambda form: check_form(form, rules=FORM_RULES), data, args.seconds)
    bare = per_form_seconds(bare_load, data, args.seconds)
    checker_s, bare_s = statistics.median(checker), statistics.median(bare)
    print()
    print(f"(a) check_form(bytes):                {1 / checker_s:7.1f} forms/s  ({checker_s * 1e3:.2f} ms a form, "
          f"median of {len(checker)} passes)")
    print(f"(b) openpyxl.load_workbook(BytesIO):  {1 / bare_s:7.1f} loads/s  ({bare_s * 1e3:.2f} ms a form, "
          f"median of {len(bare)} passes)")
    ratio = checker_s / bare_s
    print(f"    ratio checker / bare load: {ratio:.2f} (goal <= 1.5: {'met' if ratio <= 1.5 else 'NOT met'})")

    print()
    print(f"(c) hostile files: median of {args.repeats} check_form runs, tracemalloc peak of one more")
    for kind, seconds, peak, outcome in hostile_figures(args.repeats):
        print(f"  {kind:42} {seconds * 1e3:8.1f} ms  {peak / 1e6:6.1f} MB  -> {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
