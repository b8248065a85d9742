"""Sample order forms: the reference form filled by label, as a client would, with one kind of
problem (or none). `mailbot demo --forms` checks them; data/make_samples.py writes them out."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailbot.forms.builder import complete_values, fill_form
from mailbot.forms.rules import FormRules

SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    # Complete forms, typed the way people type them.
    "complete_FR.xlsx": ("fr", complete_values("fr")),
    "complete_NL.xlsx": ("nl", complete_values(
        "nl", project_name="Online betalingen Stad Lier", legal_name="Stad Lier",
        enterprise_number=207502301, vat_number="BE0207.502.301", street="Paradeplein 2",
        postal_code="2500", city="Lier", business_contact_name="An Janssens",
        business_contact_email="an.janssens@lier.be", business_contact_phone=32475123456,
        technical_contact_email="webteam@lier.be", billing_email="facturen@lier.be",
        account_holder="Stad Lier", signatory_function="Algemeen directeur",
        go_live_date=dt.datetime(2027, 3, 1),  # noqa: DTZ001 - a date cell, as Excel stores it
        expected_yearly_amount="125.000,50 €")),
    # Lot 1 only: the payment-method section may stay empty.
    "complete_lot1_only_FR.xlsx": ("fr", complete_values(
        "fr", lot_2="Non", pm_bancontact=None, pm_visa=None, pm_mastercard=None,
        settlement_iban=None, account_holder=None, expected_yearly_transactions=None,
        expected_yearly_amount=None)),
    # One of each kind of problem.
    "incomplete_FR.xlsx": ("fr", complete_values(
        "fr", expected_yearly_transactions="beaucoup",
        business_contact_email="Marie Dubois <marie.dubois@sambreville.be>",
        technical_contact_phone="", settlement_iban="BE71 0961 2345 6760", vat_number="BE 0308.357.159")),
    "incomplete_NL.xlsx": ("nl", complete_values(
        "nl", pm_bancontact=None, pm_visa=None, pm_mastercard=None, shop_url="http://webshop.lier.be",
        postal_code=250, signatory_name=None)),
    "no_lot_NL.xlsx": ("nl", complete_values("nl", lot_1="Nee", lot_2=None)),
}


def sample_forms(rules: FormRules) -> dict[str, bytes]:
    """Each sample's file name and bytes, filled by the labels `rules` give (the shipped rules
    name the labels of the shipped reference forms)."""
    return {name: fill_form(language, values, rules=rules) for name, (language, values) in sorted(SAMPLES.items())}
