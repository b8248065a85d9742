"""Fill the reference order form with values: the sample data, the tests and the demo use it.

The reference workbooks (mailbot/reference/) are the contract; filling them by label, as a
client would in Excel, keeps every sample faithful to the real layout.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import openpyxl

from mailbot.forms.rules import FormRules, label_key
from mailbot.resources import REFERENCE

REFERENCE_FILES = {
    "fr": REFERENCE / "Bon de commande_WL_M1036_FR_V2.2.xlsx",
    "nl": REFERENCE / "Bestelbon_WL_M1036_NL_V2.2.xlsx",
}

# A complete form for a made-up client; tests and samples change what they need.
COMPLETE: dict[str, Any] = {
    "project_name": "E-guichet Stadsloket",
    "lot_1": "Oui",
    "lot_2": "Oui",
    "go_live_date": "15/01/2027",
    "legal_name": "Ville de Sambreville",
    "enterprise_number": "0203.201.340",
    "vat_number": "BE 0203.201.340",
    "street": "Grand-Place 1",
    "postal_code": 5060,
    "city": "Sambreville",
    "business_contact_name": "Marie Dubois",
    "business_contact_email": "marie.dubois@sambreville.be",
    "business_contact_phone": "071 26 03 11",
    "technical_contact_name": "Koen Peeters",
    "technical_contact_email": "it-support@sambreville.be",
    "technical_contact_phone": "+32 475 12 34 56",
    "billing_email": "comptabilite@sambreville.be",
    "billing_reference": "ENG-2026-118",
    "shop_url": "https://eguichet.sambreville.be/paiement",
    "connector": "Paypage POST",
    "test_merchant_id": "002001000000001",
    "pm_bancontact": "X",
    "pm_visa": "X",
    "pm_mastercard": "X",
    "settlement_iban": "BE71 0961 2345 6769",
    "account_holder": "Ville de Sambreville",
    "expected_yearly_transactions": 12000,
    "expected_yearly_amount": 350000,
    "signatory_name": "Jean Lambert",
    "signatory_function": "Directeur général",
    "signature_place": "Sambreville",
    "signature_date": "",
}

_YES_NO_NL = {"Oui": "Ja", "Non": "Nee"}


def complete_values(language: str, **changes: Any) -> dict[str, Any]:
    """The complete sample values in a language (Oui/Non become Ja/Nee in Dutch), changed."""
    values = dict(COMPLETE)
    if language == "nl":
        values = {k: _YES_NO_NL.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    values.update(changes)
    return values


def fill_form(
    language: str,
    values: Mapping[str, Any],
    *,
    rules: FormRules,
    insert_rows: Mapping[int, int] | None = None,
    relabel: Callable[[str], str] | None = None,
    delete_fields: tuple[str, ...] = (),
    title: str | None = None,
) -> bytes:
    """The reference form of `language` with `values` typed next to the labels `rules` give.

    `insert_rows` {row: count} inserts blank rows first (as clients do), `relabel` rewrites
    each label cell, `delete_fields` removes those fields' rows, `title` replaces the title.
    """
    with REFERENCE_FILES[language].open("rb") as file:
        book = openpyxl.load_workbook(file)
    sheet = book.worksheets[0]
    for row, count in sorted((insert_rows or {}).items(), reverse=True):
        sheet.insert_rows(row, count)
    by_label = {label_key(f.labels[language]): f.id for f in rules.fields}
    rows: dict[str, int] = {}
    for (cell,) in sheet.iter_rows(min_col=2, max_col=2, max_row=sheet.max_row):
        if isinstance(cell.value, str) and (field_id := by_label.get(label_key(cell.value))):
            rows.setdefault(field_id, cell.row)
            if relabel:
                cell.value = relabel(cell.value)
    for field_id, value in values.items():
        if field_id in rows and value is not None:
            sheet.cell(rows[field_id], 3).value = value
    for row in sorted((rows[f] for f in delete_fields), reverse=True):
        sheet.delete_rows(row)
    if title is not None:
        sheet["B1"].value = title
        book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
