"""Every mail template renders with a realistic context, in the environment mailbot uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from jinja2 import Environment

from mailbot.answers.reasons import Reason
from mailbot.answers.render import Renderer

TEMPLATES = Path(__file__).resolve().parents[1] / "mailbot" / "templates"

CLIENT = ("form_incomplete", "form_complete", "form_missing", "signed_incomplete", "signed_received", "reminder",
          "change_to_confirm")
STAFF = ("warning", "escalation", "needs_human", "watchdog", "digest")  # in each team's language
PAIRS = ([(p, lang) for p in CLIENT for lang in ("fr", "nl")]
         + [(p, lang) for p in STAFF for lang in ("en", "fr", "nl")]
         + [("change_to_confirm", "en")])  # its staff note (the fr/nl ones are the clients')

SIGNATURE = {"fr": "L'équipe ePayment (message automatique de Worldline pour BOSA)",
             "nl": "Het ePayment-team (automatisch bericht van Worldline voor BOSA)"}
OTHER = {"fr": "nl", "nl": "fr"}
NOW = "2027-01-12 09:14"


@dataclass(frozen=True)
class Wait:
    """Like mailbot.dossiers.state.Wait: the templates accept it as well as a (party, what) tuple."""
    party: str
    what: str


def env() -> Environment:
    return Renderer(None, "Europe/Brussels").env


def dossier(language: str) -> NS:
    if language == "nl":
        return NS(reference="EPAY-2027-0002", project_name="Stad Gent – parkeerkaarten", organisation="Stad Gent")
    return NS(reference="EPAY-2027-0001", project_name="Ville de Namur – amendes & taxes <en ligne>",
              organisation="Ville de Namur")


PROBLEMS = {
    "fr": [
        NS(field="technical_contact_phone", code="missing", label="Contact technique – téléphone",
           message="« Contact technique – téléphone » est vide. Indiquez un numéro de téléphone complet, "
                   "par exemple 02 740 74 74 ou +32 475 12 34 56."),
        NS(field="business_contact_email", code="invalid", label="Contact business – e-mail",
           message="« Contact business – e-mail » : « Marie Dubois <marie.dubois@sambreville.be> » n'est pas "
                   "valable. Indiquez une seule adresse e-mail, sans nom ni autre adresse."),
        NS(field="payment_methods", code="inconsistent", label=None,
           message="Le lot 2 est demandé mais aucun moyen de paiement n'est coché : cochez au moins un moyen "
                   "de paiement avec un X."),
    ],
    "nl": [
        NS(field="postal_code", code="invalid", label="Postcode",
           message="„Postcode”: „250” is niet geldig. Vul een Belgische postcode van 4 cijfers in (1000 tot 9999)."),
        NS(field="shop_url", code="invalid", label="URL van de webshop",
           message="„URL van de webshop”: „http://webshop.lier.be” is niet geldig. Vul het volledige adres "
                   "van de webshop in, beginnend met https://."),
    ],
}

CHANGES = {
    "fr": NS(fixed=["Code postal", "IBAN du compte de versement"], still_wrong=["Contact business – e-mail"],
             newly_wrong=["Contact technique – téléphone"], changed=["Rue et numéro"]),
    "nl": NS(fixed=["Projectnaam"], still_wrong=[], newly_wrong=["Postcode"], changed=[]),
}
FIXED_ONLY = {"fr": NS(fixed=["Code postal"], still_wrong=[], newly_wrong=[], changed=["Commune"]),
              "nl": NS(fixed=["Postcode"], still_wrong=[], newly_wrong=[], changed=[])}
FILENAME = {"fr": "Bon de commande_WL_M1036_FR_V2.2.xlsx", "nl": "Bestelbon_WL_M1036_NL_V2.2.xlsx"}


def client_contexts(purpose: str, language: str) -> list[dict]:
    """One or more contexts per purpose, covering its branches."""
    if purpose == "form_incomplete":
        return [{"problems": PROBLEMS[language], "changes": None, "filename": FILENAME[language]},
                {"problems": PROBLEMS[language][:1], "changes": CHANGES[language], "filename": FILENAME[language]}]
    if purpose == "form_complete":
        return [{"filename": FILENAME[language], "convention_received": False, "prevalidation_days": 3, "changes": None},
                {"filename": FILENAME[language], "convention_received": True, "prevalidation_days": 3,
                 "changes": FIXED_ONLY[language]}]
    if purpose == "form_missing":
        return [{"reason": "no_attachment", "detail": ""},
                {"reason": "not_a_workbook", "detail": ""},
                {"reason": "unreadable", "detail": "the workbook is password-protected"},
                {"reason": "unreadable", "detail": ""}]
    if purpose == "signed_incomplete":
        small = NS(filename="Carte d'identité <recto>.jpg", what="id_copy", problem="too_small", size_kb=9)
        return [{"missing": ["id_copy"], "received": ["signed_order_form"], "unusable": []},
                {"missing": ["signed_order_form"], "received": ["id_copy"], "unusable": []},
                {"missing": ["signed_order_form", "id_copy"], "received": [], "unusable": []},
                {"missing": ["id_copy"], "received": ["signed_order_form"], "unusable": [small]},
                {"missing": ["signed_order_form", "id_copy"], "received": [],
                 "unusable": [small, NS(filename="IMG_0001.jpg", what="signed_order_form", problem=None, size_kb=3)]}]
    if purpose == "signed_received":
        return [{"encoding_days": 6, "convention_received": False}, {"encoding_days": 6, "convention_received": True}]
    if purpose == "reminder":
        return [{"waiting": ["corrected_order_form", "convention"], "days": 5},
                {"waiting": ["convention"], "days": 1},
                {"waiting": ["signed_order_form", "id_copy"], "days": 7},
                {"waiting": ["order_form"], "days": 3}]
    if purpose == "change_to_confirm":
        label = {"fr": "IBAN du compte de versement", "nl": "IBAN van de rekening voor uitbetaling"}[language]
        iban = NS(field="settlement_iban", label=label, old="BE71 •••• •••• 6769", new="BE71 •••• •••• 6760")
        tech = NS(field="technical_contact_email", label="e-mail <tech>", old=None, new="it@exemple.be")
        return [{"sender": "marie.dubois@exemple.be", "filename": FILENAME[language], "changes": [iban],
                 "problems": []},
                {"sender": "marie.dubois@exemple.be", "filename": FILENAME[language], "changes": [iban, tech],
                 "problems": [p.message for p in PROBLEMS[language]]}]
    raise AssertionError(purpose)


def staff_contexts(purpose: str, language: str) -> list[dict]:
    d = dossier("fr")
    if purpose in ("warning", "escalation"):
        base = {"deadline": "prevalidation", "due": "2027-01-18", "started": "2027-01-13",
                "waiting": [("worldline", "prevalidation"), ("client", "convention")],
                "last_mail": "RE: BOSA M1036 - Bon de commande – Ville de Namur"}
        other = {"deadline": "encoding", "due": "2027-01-21", "started": "2027-01-13",
                 "waiting": (Wait("worldline", "encoding"),), "last_mail": ""}
        extra = {"days_late": 2} if purpose == "escalation" else {}
        one = {"days_late": 1} if purpose == "escalation" else {}
        return [base | extra, other | one, {**base, "waiting": [], **extra}]
    if purpose == "needs_human":
        mail = NS(subject="Question sur la facturation <urgent>", sender="jean.dupont@exemple.be",
                  mailboxes=["worldline"], kind="unrelated", received="2027-01-12 09:10")
        return [{"mail": mail, "reason": Reason("no_dossier"), "_dossier": None},
                {"mail": NS(**{**vars(mail), "mailboxes": ["worldline", "bosa"], "kind": "submission"}),
                 "reason": Reason("stranger_in_dossier"), "_dossier": d}]
    if purpose == "change_to_confirm":
        iban = NS(field="settlement_iban", label="IBAN du compte de versement", old="BE71 0961 2345 6769",
                  new="BE71 0961 2345 6760")
        sign = NS(field="signatory_name", label="Nom de la personne mandatée", old=None, new="Jean <Faux>")
        return [{"sender": "marie.dubois@exemple.be", "filename": "bdc.xlsx", "changes": [iban], "problems": [],
                 "notified": ["marie.dubois@exemple.be"]},
                {"sender": "x@exemple.be", "filename": "bdc.xlsx", "changes": [iban, sign],
                 "problems": ["« Code postal » est vide."], "notified": []}]
    if purpose == "watchdog":
        base = {"mailbox": "bosa", "folder": "INBOX", "since": "2027-01-12 08:50", "error": "ConnectionRefusedError",
                "refused": None, "down": True, "_dossier": None}
        return [base, base | {"refused": "sign-in refused: AADSTS7000215 Invalid client secret"},
                base | {"down": False, "error": ""}]
    if purpose == "digest":
        full = {
            "team": "worldline", "date": "2027-01-12",
            "new_dossiers": [NS(reference="EPAY-2027-0007", project_name="CPAS de Liège – repas",
                                organisation="CPAS de Liège", opened="2027-01-11 15:02"),
                             NS(reference="EPAY-2027-0008", project_name="SPF Finances", organisation=None,
                                opened="2027-01-11 16:40")],
            "dossiers": [NS(reference="EPAY-2027-0001", project_name="Ville de Namur", stage="form_complete",
                            waiting=[("worldline", "prevalidation"), ("client", "convention")], due="2027-01-14",
                            overdue=False),
                         NS(reference="EPAY-2027-0003", project_name="Stad Gent & co", stage="signed_received",
                            waiting=(Wait("worldline", "encoding"),), due="2027-01-08", overdue=True),
                         NS(reference="EPAY-2027-0004", project_name="Gemeente Zaventem", stage="opened",
                            waiting=[("client", "order_form")], due=None, overdue=False),
                         NS(reference="EPAY-2027-0005", project_name="Commune d'Uccle", stage="access_sent",
                            waiting=[], due=None, overdue=False)],
            "due_today": [NS(reference="EPAY-2027-0006", project_name="Ville de Mons", deadline="encoding",
                             due="2027-01-12")],
            "overdue": [NS(reference="EPAY-2027-0003", project_name="Stad Gent & co", deadline="encoding",
                           due="2027-01-08", days_late=2),
                        NS(reference="EPAY-2027-0009", project_name="Ville de Huy", deadline="prevalidation",
                           due="2027-01-11", days_late=1)],
            "missing_bosa_copy": [NS(reference="EPAY-2027-0004", project_name="Gemeente Zaventem")],
            "needs_person": [NS(subject="Vraag over facturatie", sender="an.peeters@zaventem.be",
                                received="2027-01-11 14:20", reason=Reason("no_dossier"), dossier=None),
                             NS(subject="RE: Bon de commande <Namur>", sender="x@exemple.be",
                                received="2027-01-11 17:05", reason=Reason("set_aside", {"detail": "ValueError: <x>"}),
                                dossier="EPAY-2027-0001")],
            "shadow": [NS(purpose="form_incomplete", to="marie.dubois@namur.be",
                          subject="RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – Ville de Namur",
                          dossier="EPAY-2027-0001")],
            "changes_to_confirm": [NS(reference="EPAY-2027-0001", project_name="Ville de Namur <parking>",
                                      fields=["settlement_iban", "technical_contact_email"],
                                      sender="marie.dubois@namur.be", since="2027-01-11 16:02")],
            "dormant": [NS(reference="EPAY-2027-0004", project_name="Gemeente Zaventem", since="2027-01-12 08:30",
                           waiting=[("client", "order_form"), ("client", "convention")])],
            "imported": [NS(reference="EPAY-2025-0031", project_name="Commune de Spa", stage="form_incomplete",
                            waiting=[("client", "corrected_order_form"), ("client", "convention")],
                            opened="2025-06-03 10:12")],
            "claimed_twice": [NS(project_name="Ville de Namur", references=["EPAY-2027-0001", "EPAY-2027-0010"])],
            "site": "https://mailbot.example.org",  # [web] public_url: each dossier linked to its page
        }
        empty = {"team": "bosa", "date": "2027-01-13", "new_dossiers": [], "dossiers": [], "due_today": [],
                 "overdue": [], "missing_bosa_copy": [], "needs_person": [], "shadow": [], "changes_to_confirm": [],
                 "dormant": [], "imported": [], "claimed_twice": []}
        return [full | {"_dossier": None}, empty | {"_dossier": None}]
    raise AssertionError(purpose)


def cases():
    for purpose, language in PAIRS:
        client = purpose in CLIENT and language != "en"  # change_to_confirm goes to both, staff's in English
        contexts = client_contexts(purpose, language) if client else staff_contexts(purpose, language)
        for i, extra in enumerate(contexts):
            extra = dict(extra)  # noqa: PLW2901 - a copy, changed below
            d = extra.pop("_dossier") if "_dossier" in extra else (dossier(language) if client
                                                                  else dossier("fr"))
            ctx = {"dossier": d, "language": language, "now": NOW} | extra
            yield pytest.param(purpose, language, ctx, id=f"{purpose}.{language}-{i}")


CASES = list(cases())
ENV = env()


def render(purpose: str, language: str, ctx: dict) -> tuple[str, str]:
    text = ENV.get_template(f"{purpose}.{language}.txt").render(ctx)
    html = ENV.get_template(f"{purpose}.{language}.html").render(ctx)
    return text, html


def test_every_template_file_exists():
    names = {p.name for p in TEMPLATES.iterdir()}
    expected = {f"{p}.{lang}.{ext}" for p, lang in PAIRS for ext in ("txt", "html")}
    assert len(expected) == 60
    assert expected <= names, sorted(expected - names)
    assert "_layout.html" in names


@pytest.mark.parametrize(("purpose", "language", "ctx"), CASES)
def test_renders(purpose, language, ctx):
    text, html = render(purpose, language, ctx)
    first, _, rest = text.partition("\n")
    assert first.startswith("Subject: ") and len(first) > len("Subject: ") + 5
    assert rest.startswith("\n") and rest.strip(), "a blank line, then the body"
    assert "{{" not in text and "{%" not in text
    assert "{{" not in html and "{%" not in html and "}}" not in html
    assert html.lstrip().startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html.lower() and "src=" not in html.lower() and "<link" not in html.lower()
    assert "None" not in text and "None" not in html
    if ctx["dossier"] is not None:
        assert ctx["dossier"].reference in text and ctx["dossier"].reference in html
    if purpose == "form_incomplete":
        for problem in ctx["problems"]:
            assert problem.message in text
    if language in SIGNATURE:
        other = SIGNATURE[OTHER[language]]
        assert other not in text and other not in html, "no signature of the other language"
    if purpose in CLIENT and language != "en":
        assert SIGNATURE[language] in text
        assert SIGNATURE[language].replace("'", "&#39;") in html
    else:  # staff notes carry no client signature
        assert SIGNATURE["fr"] not in text and SIGNATURE["nl"] not in text
        assert "ePayment-team (automatisch" not in html and "équipe ePayment (message" not in html


@pytest.mark.parametrize(("purpose", "language", "ctx"), [c for c in CASES if c.values[0] == "form_incomplete"])
def test_problem_messages_escaped_in_html(purpose, language, ctx):
    _, html = render(purpose, language, ctx)
    for problem in ctx["problems"]:
        assert problem.message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
            .replace("'", "&#39;").replace('"', "&#34;") in html
    assert "<marie.dubois" not in html


def test_changes_lists_only_non_empty():
    ctx = {"dossier": dossier("nl"), "language": "nl", "now": NOW, "problems": PROBLEMS["nl"],
           "changes": CHANGES["nl"], "filename": FILENAME["nl"]}
    text, _ = render("form_incomplete", "nl", ctx)
    assert "nu in orde: „Projectnaam”" in text and "nieuwe problemen: „Postcode”" in text
    assert "nog steeds te verbeteren" not in text and "andere gewijzigde velden" not in text


def test_form_complete_convention_reminder():
    base = {"dossier": dossier("fr"), "language": "fr", "now": NOW, "filename": FILENAME["fr"],
            "prevalidation_days": 3, "changes": None}
    missing, _ = render("form_complete", "fr", base | {"convention_received": False})
    received, _ = render("form_complete", "fr", base | {"convention_received": True})
    assert "convention d'utilisation" in missing and "convention d'utilisation" not in received
    assert "3 jours ouvrables" in missing and "fichier séparé" in missing


@pytest.mark.parametrize(("language", "awaited", "no_action"), [
    ("fr", "convention d'utilisation signée", "Aucune action n'est requise"),
    ("nl", "ondertekende gebruiksovereenkomst", "hoeft u niets te doen"),
])
def test_signed_received_says_the_convention_is_still_awaited(language, awaited, no_action):
    base = {"dossier": dossier(language), "language": language, "now": NOW, "encoding_days": 6}
    for owed in (True, False):
        text, html = render("signed_received", language, base | {"convention_received": not owed})
        for body in (text, html.replace("<strong>", "").replace("</strong>", "")):
            assert (awaited in body) is owed, (owed, body)
            assert (no_action in body) is not owed, (owed, body)


@pytest.mark.parametrize(("language", "said", "not_said"), [
    ("fr", "« Carte d'identité <recto>.jpg » (9 Ko), mais nous ne pouvons pas l'utiliser comme copie de la carte "
           "d'identité : l'image est trop petite pour être lisible", ("manquant", "Il manque encore")),
    ("nl", "„Carte d'identité <recto>.jpg” (9 kB) goed ontvangen, maar kunnen het niet gebruiken als kopie van de "
           "identiteitskaart: de afbeelding is te klein", ("ontbreekt", "Wat nog ontbreekt")),
])
def test_signed_incomplete_names_a_file_that_came_but_cannot_be_used(language, said, not_said):
    small = NS(filename="Carte d'identité <recto>.jpg", what="id_copy", problem="too_small", size_kb=9)
    ctx = {"dossier": dossier(language), "language": language, "now": NOW, "missing": ["id_copy"],
           "received": ["signed_order_form"], "unusable": [small]}
    text, html = render("signed_incomplete", language, ctx)
    assert said in text
    assert "<recto>" not in html and said in unescape(html).replace("\xa0", " ")
    for words in not_said:
        assert words not in text and words not in html


def test_codes_are_translated():
    ctx = dict(CASES[[c.id for c in CASES].index("digest.nl-0")].values[2])
    text, html = render("digest", "nl", ctx)
    for code in ("prevalidation", "form_complete", "signed_received", "order_form", "corrected_order_form",
                 "settlement_iban", "technical_contact_email"):
        assert code not in text and code not in html
    assert "voorvalidatie van de bestelbon" in text and "EPAY-2027-0007" in html
    assert "EPAY-2025-0031" in text and "EPAY-2025-0031" in html and "GEÏMPORTEERD" in text
    empty = dict(CASES[[c.id for c in CASES].index("digest.fr-1")].values[2])
    text, html = render("digest", "fr", empty)
    assert "aucun" in text and "aucun" in html and "shadow" not in text.lower() and "historique" not in text.lower()


def test_change_to_confirm_shows_what_it_is_given():
    """The client's text shows the values as given (plan.py masks the IBAN), old and new."""
    ctx = dict(CASES[[c.id for c in CASES].index("change_to_confirm.fr-1")].values[2])
    text, html = render("change_to_confirm", "fr", ctx)
    assert "« BE71 •••• •••• 6760 » au lieu de « BE71 •••• •••• 6769 »" in text
    assert "« it@exemple.be »" in text and "marie.dubois@exemple.be" in text
    assert "e-mail &lt;tech&gt;" in html and "<tech>" not in html
    staff = dict(CASES[[c.id for c in CASES].index("change_to_confirm.en-0")].values[2])
    text, html = render("change_to_confirm", "en", staff)
    assert "BE71 0961 2345 6769 -> BE71 0961 2345 6760" in text
    assert "mailbot mark EPAY-2027-0001 confirm-changes" in text and "reject-changes" in html


def test_subject_is_one_short_line():
    for param in CASES:
        purpose, language, ctx = param.values
        text, _ = render(purpose, language, ctx)
        subject = text.partition("\n")[0]
        assert len(subject) < 160, subject
        assert not re.search(r"\s{2,}", subject), subject


class _Balance(HTMLParser):
    VOID = {"br", "meta", "hr", "img", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> inside {self.stack[-3:]}")


@pytest.mark.parametrize(("purpose", "language", "ctx"), CASES)
def test_html_is_balanced(purpose, language, ctx):
    _, html = render(purpose, language, ctx)
    parser = _Balance()
    parser.feed(html)
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
