"""The `mailbot` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from mailbot.errors import MailbotError
from mailbot.forms import check_form, load_rules
from mailbot.forms.report import render_text
from mailbot.forms.workbook import ensure_safe_xml

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def _exit_status(checks: Sequence) -> int:
    """0 when every form is complete, 2 when a file is not readable as an order form, else 1."""
    if any(not c.is_order_form for c in checks):
        return 2
    return 0 if all(c.complete for c in checks) else 1


def cmd_check_form(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules) if args.rules else None
    checks = [check_form(Path(f), rules=rules) for f in args.files]
    if args.json:
        out = [c.to_json() for c in checks]
        print(json.dumps(out[0] if len(out) == 1 else out, ensure_ascii=False, indent=2, default=str))
    else:
        print("\n\n".join(render_text(c) for c in checks))
    return _exit_status(checks)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: check every sample form shipped in data/samples."""
    files = sorted(SAMPLES.glob("*.xlsx"))
    if not files:
        print(f"no sample forms in {SAMPLES}; run: python data/make_samples.py", file=sys.stderr)
        return 2
    for path in files:
        print(render_text(check_form(path, name=path.name)), end="\n\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailbot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-form", help="check ePayment order forms (.xlsx)")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--json", action="store_true", help="one JSON object per file")
    check.add_argument("--rules", help="another rules file than rules/order_form.toml")
    check.set_defaults(func=cmd_check_form)
    demo = sub.add_parser("demo", help="run the bot on its embedded sample data")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ensure_safe_xml()
        return args.func(args)
    except MailbotError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 2
