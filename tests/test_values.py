"""Unit tests of the value checks: values as people really type them."""

import datetime as dt

import pytest

from mailbot.forms import values as v
from mailbot.forms.values import InvalidValue


@pytest.mark.parametrize("typed, expected", [
    ("0203.201.340", "0203.201.340"),
    ("0203 201 340", "0203.201.340"),
    ("BE0203201340", "0203.201.340"),
    ("BE 0203.201.340", "0203.201.340"),
    (203201340, "0203.201.340"),  # typed as a number: leading zero lost
    (203201340.0, "0203.201.340"),
    ("0308-357-159", "0308.357.159"),
])
def test_enterprise_number_valid(typed, expected):
    assert v.check_enterprise_number(typed) == expected


@pytest.mark.parametrize("typed", ["0203.201.341", "2203.201.340", "12345", "abc", "0203.201.3400"])
def test_enterprise_number_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_enterprise_number(typed)


@pytest.mark.parametrize("typed, expected", [
    ("BE0203201340", "BE0203.201.340"),
    ("BE 0203.201.340", "BE0203.201.340"),
    ("be0203201340", "BE0203.201.340"),
    ("0203.201.340", "BE0203.201.340"),
])
def test_vat_valid(typed, expected):
    assert v.check_vat_be(typed) == expected


@pytest.mark.parametrize("typed", ["BE0203201341", "FR40303265045", "BE12", "TVA non assujetti"])
def test_vat_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_vat_be(typed)


@pytest.mark.parametrize("typed, expected", [
    ("02 740 74 74", "+3227407474"),
    ("0475 12 34 56", "+32475123456"),
    ("+32 2 740 74 74", "+3227407474"),
    ("0032 475 12 34 56", "+32475123456"),
    ("+32 (0)2 740 74 74", "+3227407474"),
    (32475123456, "+32475123456"),  # typed as a number: + lost
    (475123456, "+32475123456"),  # typed as a number: leading 0 lost
    ("+33 1 42 68 53 00", "+33142685300"),  # any valid international number
    ("+31 20 624 1111", "+31206241111"),
])
def test_phone_valid(typed, expected):
    assert v.check_phone(typed) == expected


@pytest.mark.parametrize("typed", ["123", "0475 12 34", "pas de téléphone", "+32 475 12 34 56 78 90 12 34"])
def test_phone_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_phone(typed)


@pytest.mark.parametrize("typed, expected", [
    ("jan.peeters@stad.gent", "jan.peeters@stad.gent"),
    (" marie.dubois@sambreville.be ", "marie.dubois@sambreville.be"),
    ("mailto:it@lier.be", "it@lier.be"),
    ("Facturen@Lier.BE", "Facturen@lier.be"),
])
def test_email_valid(typed, expected):
    assert v.check_email(typed) == expected


@pytest.mark.parametrize("typed", [
    "Marie Dubois <marie.dubois@sambreville.be>", "a@lier.be; b@lier.be", "a@lier.be, b@lier.be",
    "marie.dubois", "marie@", "@lier.be", "marie dubois@lier.be",
])
def test_email_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_email(typed)


@pytest.mark.parametrize("typed, expected", [
    ("BE71 0961 2345 6769", "BE71 0961 2345 6769"),
    ("be71096123456769", "BE71 0961 2345 6769"),
    ("NL91ABNA0417164300", "NL91 ABNA 0417 1643 00"),
])
def test_iban_valid(typed, expected):
    assert v.check_iban(typed) == expected


@pytest.mark.parametrize("typed", ["BE71 0961 2345 6760", "BE71 0961 2345 676", "12345"])
def test_iban_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_iban(typed)


@pytest.mark.parametrize("typed, expected", [
    (dt.datetime(2027, 1, 15), "2027-01-15"),
    (dt.date(2027, 1, 15), "2027-01-15"),
    ("15/01/2027", "2027-01-15"),
    ("2027-01-15", "2027-01-15"),
    ("15.01.2027", "2027-01-15"),
    ("15-01-2027", "2027-01-15"),
    ("15/1/27", "2027-01-15"),
    (46402, "2027-01-15"),  # an Excel serial whose date format was lost
])
def test_date_valid(typed, expected):
    assert v.check_date(typed) == expected


@pytest.mark.parametrize("typed", ["31/02/2027", "asap", "Q1 2027", "2027-13-01", 12])
def test_date_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_date(typed)


@pytest.mark.parametrize("typed, expected", [("1000", 1000), (9999, 9999), (5060.0, 5060), (" 2500 ", 2500)])
def test_postcode_valid(typed, expected):
    assert v.check_postcode_be(typed) == expected


@pytest.mark.parametrize("typed", ["999", 10000, "B-1000", "75001 Paris", 250])
def test_postcode_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_postcode_be(typed)


@pytest.mark.parametrize("typed, expected", [
    ("https://eguichet.sambreville.be/paiement", "https://eguichet.sambreville.be/paiement"),
    ("HTTPS://shop.lier.be", "HTTPS://shop.lier.be"),
])
def test_url_valid(typed, expected):
    assert v.check_https_url(typed) == expected


@pytest.mark.parametrize("typed", ["http://shop.lier.be", "www.lier.be", "https://", "https://localhost",
                                   "shop", "https://sh op.be"])
def test_url_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_https_url(typed)


def test_choice_ignores_case_and_spaces():
    choices = ["Paypage POST", "Paypage JSON", "Office JSON"]
    assert v.check_choice(" paypage\u00a0json ", choices) == "Paypage JSON"
    with pytest.raises(InvalidValue):
        v.check_choice("Paypage SOAP", choices)


@pytest.mark.parametrize("typed, expected", [
    ("002001000000001", "002001000000001"),
    (2001000000001, "002001000000001"),  # typed as a number: leading zeros lost
    ("002 001 000 000 001", "002001000000001"),
])
def test_digits(typed, expected):
    assert v.check_digits(typed, length=15) == expected


@pytest.mark.parametrize("typed", ["12345", "00200100000000A", "0020010000000012"])
def test_digits_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_digits(typed, length=15)


@pytest.mark.parametrize("typed, expected", [
    ("X", True), ("x", True), ("✓", True), ("✔", True), ("Oui", True), ("Ja", True), ("Yes", True),
    (True, True), ("Non", False), ("nee", False),
])
def test_mark(typed, expected):
    assert v.check_mark(typed) is expected


def test_mark_invalid():
    with pytest.raises(InvalidValue):
        v.check_mark("peut-être")


@pytest.mark.parametrize("typed, expected", [("Oui", True), ("NON", False), ("ja", True), ("Nee", False),
                                            ("oui ", True), (True, True)])
def test_yes_no(typed, expected):
    assert v.check_yes_no(typed) is expected


def test_yes_no_invalid():
    with pytest.raises(InvalidValue):
        v.check_yes_no("à voir")


@pytest.mark.parametrize("typed, expected", [
    (12000, 12000), (12000.0, 12000), ("12 000", 12000), ("12.000", 12000), ("1,500,000", 1500000),
    ("12\u00a0000", 12000),
])
def test_whole_positive(typed, expected):
    assert v.check_whole_positive(typed) == expected


@pytest.mark.parametrize("typed", [0, -5, "1500,5", "beaucoup", 12.5])
def test_whole_positive_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_whole_positive(typed)


@pytest.mark.parametrize("typed, expected", [
    (350000, 350000), ("125.000,50 €", 125000.5), ("€ 1 250,75", 1250.75), ("1,250.75", 1250.75),
    ("350000 EUR", 350000), ("99,9", 99.9),
])
def test_number_positive(typed, expected):
    assert v.check_number_positive(typed) == expected


@pytest.mark.parametrize("typed", [0, "-1", "n/a", "€"])
def test_number_positive_invalid(typed):
    with pytest.raises(InvalidValue):
        v.check_number_positive(typed)


def test_text_folds_spaces():
    assert v.check_text("  Ville\u00a0de   Namur ") == "Ville de Namur"
    assert v.check_text(12345.0) == "12345"
