"""The order-form checker against FIELDS.md, on real workbooks filled from the reference forms."""

import datetime as dt
import json
import tomllib

import pytest

from mailbot.cli import main
from mailbot.errors import RulesError
from mailbot.forms import check_form, load_rules
from mailbot.forms.builder import REFERENCE, complete_values, fill_form
from mailbot.forms.rules import DEFAULT_RULES, parse_rules

LANGS = ["fr", "nl"]
RULES = load_rules()
MANDATORY = [f.id for f in RULES.fields if f.need == "mandatory" and f.id not in ("lot_1", "lot_2")]
OPTIONAL = [f.id for f in RULES.fields if f.need == "optional"]
LOT1_FIELDS = [f.id for f in RULES.fields if f.when == "lot_1"]
LOT2_FIELDS = [f.id for f in RULES.fields if f.when == "lot_2"]
PAYMENT = ["pm_bancontact", "pm_visa", "pm_mastercard", "pm_maestro", "pm_vpay"]


def yes(lang):
    return "Oui" if lang == "fr" else "Ja"


def no(lang):
    return "Non" if lang == "fr" else "Nee"


def check(lang, **changes):
    return check_form(fill_form(lang, complete_values(lang, **changes), rules=RULES), name=f"form_{lang}.xlsx", rules=RULES)


def pairs(result):
    return sorted(result.problem_pairs())


@pytest.mark.parametrize("lang", LANGS)
def test_complete_form(lang):
    result = check(lang)
    assert result.problems == ()
    assert result.complete is True
    assert (result.language, result.version) == (lang, "2.2")
    assert result.values["enterprise_number"] == "0203.201.340"
    assert result.values["business_contact_phone"] == "+3271260311"
    assert result.values["settlement_iban"] == "BE71 0961 2345 6769"
    assert result.values["lot_1"] is True and result.values["pm_visa"] is True


def test_rules_follow_fields_md():
    """Every field of the contract's table is in the rules file, with its labels and need."""
    table = REFERENCE / "FIELDS.md"
    rows = [line.split("|")[1:-1] for line in table.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| id", "|---"))]
    seen = set()
    for cells in rows:
        ids, fr, nl, need = (c.strip() for c in cells[:4])
        if ids.startswith("pm_"):
            continue  # one row for the five payment methods, checked below
        rule = RULES.field(ids)
        seen.add(ids)
        assert (rule.labels["fr"], rule.labels["nl"]) == (fr, nl)
        expected = {"M": "mandatory", "O": "optional"}.get(need, "conditional")
        assert rule.need == expected, ids
        if expected == "conditional":
            assert rule.when == "lot_" + need[-1]
    assert [RULES.field(pm).labels["fr"] for pm in PAYMENT] == ["Bancontact", "Visa", "Mastercard", "Maestro", "V PAY"]
    assert seen | set(PAYMENT) == {f.id for f in RULES.fields}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field", MANDATORY)
def test_mandatory_field_missing(lang, field):
    result = check(lang, **{field: None})
    assert pairs(result) == [(field, "missing")]
    problem = result.problems[0]
    assert problem.label == RULES.field(field).labels[lang]
    assert problem.label in problem.message


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field", ["lot_1", "lot_2"])
def test_one_lot_empty_is_missing(lang, field):
    assert pairs(check(lang, **{field: "   "})) == [(field, "missing")]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field", OPTIONAL)
def test_optional_field_may_be_empty(lang, field):
    assert pairs(check(lang, **{field: None})) == []


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field", LOT1_FIELDS)
def test_lot1_fields_needed_only_with_lot1(lang, field):
    assert pairs(check(lang, **{field: None})) == [(field, "missing")]
    assert pairs(check(lang, lot_1=no(lang), **{field: None})) == []


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field", LOT2_FIELDS)
def test_lot2_fields_needed_only_with_lot2(lang, field):
    assert pairs(check(lang, **{field: None})) == [(field, "missing")]
    assert pairs(check(lang, lot_2=no(lang), **{field: None})) == []


INVALID = {
    "lot_1": "Peut-être",
    "lot_2": "misschien",
    "go_live_date": "dès que possible",
    "enterprise_number": "0203.201.341",
    "vat_number": "BE0203201341",
    "postal_code": "B-1000",
    "business_contact_email": "Marie Dubois <marie.dubois@sambreville.be>",
    "business_contact_phone": "12345",
    "technical_contact_email": "it@sambreville.be; webmaster@sambreville.be",
    "technical_contact_phone": "+32 475",
    "billing_email": "comptabilite",
    "shop_url": "http://eguichet.sambreville.be",
    "connector": "SOAP",
    "test_merchant_id": "12345",
    "pm_maestro": "peut-être",
    "settlement_iban": "BE71 0961 2345 6760",
    "expected_yearly_transactions": "beaucoup",
    "expected_yearly_amount": -5,
    "signature_date": "31/02/2027",
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("field, value", sorted(INVALID.items()))
def test_invalid_value(lang, field, value):
    result = check(lang, **{field: value})
    assert pairs(result) == [(field, "invalid")]
    assert result.problems[0].message.count("\n") == 0
    assert field not in result.values


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("lot1, lot2", [(None, None), ("no", "no"), ("no", None)])
def test_no_lot_reports_lots_only(lang, lot1, lot2):
    vals = {None: None, "no": no(lang)}
    result = check(lang, lot_1=vals[lot1], lot_2=vals[lot2])
    assert pairs(result) == [("lots", "missing")]


@pytest.mark.parametrize("lang", LANGS)
def test_unreadable_lot_with_no_lot_is_invalid_and_lots_missing(lang):
    assert pairs(check(lang, lot_1="bof", lot_2=None)) == [("lot_1", "invalid"), ("lots", "missing")]


@pytest.mark.parametrize("lang", LANGS)
def test_payment_methods_needed_with_lot2(lang):
    none = dict.fromkeys(PAYMENT)
    assert pairs(check(lang, **none)) == [("payment_methods", "missing")]
    assert pairs(check(lang, lot_2=no(lang), **none)) == []
    one = dict(none, pm_vpay="✓")
    assert pairs(check(lang, **one)) == []


@pytest.mark.parametrize("lang", LANGS)
def test_vat_of_another_enterprise_is_inconsistent(lang):
    result = check(lang, vat_number="BE 0308.357.159")
    assert pairs(result) == [("vat_number", "inconsistent")]
    # Not inconsistent when the enterprise number itself is wrong: that is the problem to fix.
    assert pairs(check(lang, vat_number="BE 0308.357.159", enterprise_number="0203.201.341")) == [
        ("enterprise_number", "invalid")]


@pytest.mark.parametrize("lang", LANGS)
def test_values_typed_as_numbers_and_dates(lang):
    result = check(lang, enterprise_number=203201340, business_contact_phone=32475123456,
                   technical_contact_phone=27407474, postal_code=5060.0,
                   test_merchant_id=2001000000001, go_live_date=dt.datetime(2027, 1, 15),
                   signature_date="2027-01-10", expected_yearly_amount="350.000,00",
                   vat_number="be0203201340")
    assert pairs(result) == []
    assert result.values["enterprise_number"] == "0203.201.340"
    assert result.values["business_contact_phone"] == "+32475123456"
    assert result.values["technical_contact_phone"] == "+3227407474"
    assert result.values["postal_code"] == 5060
    assert result.values["test_merchant_id"] == "002001000000001"
    assert result.values["go_live_date"] == "2027-01-15"
    assert result.values["signature_date"] == "2027-01-10"
    assert result.values["expected_yearly_amount"] == 350000
    assert result.values["vat_number"] == "BE0203.201.340"


@pytest.mark.parametrize("lang", LANGS)
def test_stray_spaces_and_nbsp_in_values(lang):
    result = check(lang, project_name="  E-guichet\u00a0 Stadsloket ", enterprise_number=" 0203\u00a0201\u00a0340 ",
                   billing_email=" comptabilite@sambreville.be\u00a0", lot_1=f" {yes(lang).upper()} ")
    assert pairs(result) == []
    assert result.values["project_name"] == "E-guichet Stadsloket"


@pytest.mark.parametrize("lang", LANGS)
def test_rows_moved_and_labels_retyped(lang):
    data = fill_form(lang, complete_values(lang, postal_code=None), insert_rows={4: 3, 20: 2, 30: 5},
                     relabel=lambda label: "  " + label.upper().replace(" ", "\u00a0 ") + " :", rules=RULES)
    result = check_form(data, rules=RULES)
    assert pairs(result) == [("postal_code", "missing")]
    assert result.values["settlement_iban"] == "BE71 0961 2345 6769"


@pytest.mark.parametrize("lang", LANGS)
def test_deleted_row(lang):
    data = fill_form(lang, complete_values(lang), delete_fields=("city", "billing_reference"), rules=RULES)
    result = check_form(data, rules=RULES)
    assert pairs(result) == [("city", "missing")]
    assert "introuvable" in result.problems[0].message or "staat niet" in result.problems[0].message


@pytest.mark.parametrize("lang, title", [("fr", "Bon de commande – ePayment BOSA M1036 – Worldline – Version 2.1"),
                                         ("nl", "Bestelbon – ePayment BOSA M1036 – Worldline – Versie 2.0")])
def test_wrong_version(lang, title):
    result = check_form(fill_form(lang, complete_values(lang), title=title, rules=RULES), rules=RULES)
    assert pairs(result) == [("form", "wrong_version")]
    assert result.language == lang and result.version == title[-3:]
    assert result.complete is False


def test_other_workbook_is_not_an_order_form(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active["A1"] = "Budget 2027"
    book.active["A2"] = "Nom du projet"
    path = tmp_path / "budget.xlsx"
    book.save(path)
    result = check_form(path, rules=RULES)
    assert pairs(result) == [("form", "not_an_order_form")]
    assert result.language is None and result.version is None


def test_title_lost_but_labels_present_is_still_checked():
    data = fill_form("nl", complete_values("nl"), title="", rules=RULES)
    result = check_form(data, rules=RULES)
    assert result.complete and result.language == "nl"


def test_missing_file_is_unreadable(tmp_path):
    result = check_form(tmp_path / "absent.xlsx", rules=RULES)
    assert pairs(result) == [("form", "unreadable")]


# --- the command line ----------------------------------------------------------------------

def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_cli_json_one_and_many(tmp_path, capsys):
    good = _write(tmp_path, "good.xlsx", fill_form("fr", complete_values("fr"), rules=RULES))
    assert main(["check-form", "--json", good]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["file"] == good and one["complete"] is True and one["language"] == "fr"
    assert one["version"] == "2.2" and one["problems"] == []
    assert one["values"]["enterprise_number"] == "0203.201.340"

    bad = _write(tmp_path, "bad.xlsx", fill_form("nl", complete_values("nl", billing_email="facturen"), rules=RULES))
    assert main(["check-form", "--json", good, bad]) == 1
    many = json.loads(capsys.readouterr().out)
    assert [m["complete"] for m in many] == [True, False]
    assert [(p["field"], p["code"]) for p in many[1]["problems"]] == [("billing_email", "invalid")]
    assert "E-mailadres voor facturatie" in many[1]["problems"][0]["message"]

    junk = _write(tmp_path, "junk.xlsx", b"%PDF-1.7 not a workbook")
    assert main(["check-form", "--json", good, bad, junk]) == 2
    many = json.loads(capsys.readouterr().out)
    assert many[2]["problems"][0]["field"] == "form" and many[2]["problems"][0]["code"] == "unreadable"


def test_cli_text_report(tmp_path, capsys):
    bad = _write(tmp_path, "bad.xlsx", fill_form("fr", complete_values("fr", postal_code=None), rules=RULES))
    assert main(["check-form", bad]) == 1
    out = capsys.readouterr().out
    assert "incomplet" in out and "« Code postal » est vide" in out


def test_demo_checks_the_samples(capsys):
    assert main(["demo", "--forms"]) == 0
    out = capsys.readouterr().out
    assert "complete_FR.xlsx (FR, v2.2): complet" in out
    assert "[lots: missing]" in out


# --- the rules file ------------------------------------------------------------------------

def _rules_data():
    return tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["fields"][0].update(check="colour"), "field 'project_name': unknown check 'colour'"),
    (lambda d: d["fields"][0].update(need="sometimes"), "field 'project_name': need must be"),
    (lambda d: d["fields"][18].update(need="when:lot_9"), "'when:lot_9' must name a yes_no field"),
    (lambda d: d["fields"][1].pop("nl"), "field 'lot_1': the key 'nl' is missing"),
    (lambda d: d["fields"].append(dict(d["fields"][0])), "duplicate id(s) project_name"),
    (lambda d: d["rules"][0]["fields"].append("lot_3"), "rule 'lots': unknown field 'lot_3'"),
    (lambda d: d["hints"]["nl"].pop("iban"), "[hints.nl]: missing iban"),
    (lambda d: d["fields"][19].pop("choices"), "field 'connector': the key 'choices' is missing"),
])
def test_rules_errors_name_the_entry(mutate, words):
    data = _rules_data()
    mutate(data)
    with pytest.raises(RulesError) as err:
        parse_rules(data, "order_form.toml")
    assert words in str(err.value)


def test_a_renamed_label_is_a_rules_change(tmp_path):
    """A new form version that renames a label needs only an edit of the rules file."""
    data = _rules_data()
    city = next(f for f in data["fields"] if f.get("id") == "city")
    city["fr"] = "Localité"
    rules = parse_rules(data)
    form = fill_form("fr", complete_values("fr"), relabel=lambda label: "Localité" if label == "Commune" else label, rules=RULES)
    assert pairs(check_form(form, rules=rules)) == []
    assert pairs(check_form(form, rules=RULES)) == [("city", "missing")]


@pytest.mark.parametrize("lang, typed", [("fr", "Non assujetti"), ("fr", "N/A"), ("nl", "n.v.t."), ("nl", "Niet van toepassing")])
def test_not_applicable_in_an_optional_field_is_empty(lang, typed):
    result = check(lang, vat_number=typed, billing_reference="-")
    assert pairs(result) == [] and "vat_number" not in result.values
    assert pairs(check(lang, legal_name="N/A")) == []  # a mandatory field keeps what was typed
