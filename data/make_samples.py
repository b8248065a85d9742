"""Regenerate the sample order forms in data/samples/ from the reference workbooks.

    python data/make_samples.py

Each sample is the reference form filled by label, as a client would, with one kind of
problem (or none): mailbot/forms/samples.py. `mailbot demo --forms` checks the same forms.
"""

from __future__ import annotations

from pathlib import Path

from mailbot.forms import load_rules
from mailbot.forms.samples import sample_forms

OUT = Path(__file__).resolve().parent / "samples"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, data in sample_forms(load_rules()).items():
        (OUT / name).write_bytes(data)
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
