"""Who the client of a forwarded mail is, as the mail programs in Belgium write forwards (pure).
The flow end to end is in test_forwarded_mail.py."""

import pytest

from mailbot.config import load_settings
from mailbot.errors import RulesError
from mailbot.mail.forwards import DEFAULT_FORWARD_RULES, forwarded_client, load_forward_rules
from mailbot.mail.parse import parse_mail
from mailbot.mail.subject import load_subject_rules, parse_subject
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import Mail, brussels

SETTINGS = load_settings(SANDBOX_CONFIG)
RULES = load_forward_rules()
SUBJECTS = load_subject_rules()
WL = SETTINGS.mailboxes["worldline"].address
BOSA_STAFF = SETTINGS.mailboxes["bosa"].staff[0]
CLIENT = "marie.dubois@sambreville.be"
TEXT = "Bonjour,\n\nVoici notre bon de commande.\n\nMarie"


def fwd(body: str, subject: str = "TR: Bon de commande E-guichet", sender: str = BOSA_STAFF, to=(WL,), rules=RULES):
    mail = parse_mail(Mail(brussels(2027, 3, 1, 9), sender, list(to), subject, body, message_id="<f@x.be>").to_bytes())
    return forwarded_client(mail, parse_subject(mail.subject, SUBJECTS), SETTINGS, rules)


@pytest.mark.parametrize("head", [
    # Gmail, in the three languages of its interface
    "---------- Forwarded message ---------\nFrom: Marie Dubois <marie.dubois@sambreville.be>\n"
    "Date: Mon, Mar 1, 2027 at 7:02 AM\nSubject: Bon de commande\nTo: <x@bosa.be>",
    "---------- Message transféré ---------\nDe : Marie Dubois <marie.dubois@sambreville.be>\n"
    "Date : lun. 1 mars 2027 à 07:02\nSubject: Bon de commande\nTo: <x@bosa.be>",
    "---------- Doorgestuurd bericht ---------\nVan: Marie Dubois <marie.dubois@sambreville.be>\n"
    "Date: ma 1 mrt 2027 om 07:02\nSubject: Bon de commande\nTo: <x@bosa.be>",
    # Gmail's HTML part read as text: the labels in bold
    "---------- Forwarded message ---------\n*From:* Marie Dubois <marie.dubois@sambreville.be>\n"
    "*Date:* Mon, Mar 1, 2027\n*Subject:* Bon de commande\n*To:* x@bosa.be",
    # Outlook: a rule, then the header lines (FR, NL, EN, DE), mailto: in brackets
    "________________________________\nDe : Dubois Marie <marie.dubois@sambreville.be>\n"
    "Envoyé : lundi 1 mars 2027 07:02\nÀ : ePayment <x@bosa.be>\nObjet : Bon de commande",
    "________________________________\nVan: Dubois Marie <marie.dubois@sambreville.be>\n"
    "Verzonden: maandag 1 maart 2027 07:02\nAan: ePayment <x@bosa.be>\nOnderwerp: Bon de commande",
    "From: Dubois Marie [mailto:marie.dubois@sambreville.be]\nSent: Monday, March 1, 2027 7:02 AM\n"
    "To: ePayment <x@bosa.be>;\n    Other Person <y@bosa.be>\nSubject: Bon de commande",
    "Von: Dubois Marie <marie.dubois@sambreville.be>\nGesendet: Montag, 1. März 2027 07:02\n"
    "An: x@bosa.be\nBetreff: Bon de commande",
    "-----Original Message-----\nFrom: Marie.Dubois@Sambreville.be\nSent: Monday\nSubject: Bon de commande",
    # Apple Mail (a blank line after the marker) and Thunderbird (Subject first)
    "Begin forwarded message:\n\nFrom: Marie Dubois <marie.dubois@sambreville.be>\nSubject: Bon de commande\n"
    "Date: 1 March 2027 at 07:02:00 CET\nTo: x@bosa.be",
    "Début du message réexpédié :\n\nDe: Marie Dubois <marie.dubois@sambreville.be>\nObjet: Bon de commande\n"
    "Date: 1 mars 2027 à 07:02:00 UTC+1\nÀ: x@bosa.be",
    "-------- Forwarded Message --------\nSubject: \tBon de commande\nDate: \tMon, 1 Mar 2027 07:02:00 +0100\n"
    "From: \tMarie Dubois <marie.dubois@sambreville.be>\nTo: \tx@bosa.be",
    "-------- Message d'origine --------\nDe : marie.dubois@sambreville.be\nDate : 01/03/2027 07:02\n"
    "À : x@bosa.be\nObjet : Bon de commande",
])
def test_the_client_is_found_under_the_header_lines_of_each_mail_program(head):
    got = fwd(f"Pour suite utile.\n\n{head}\n\n{TEXT}")
    assert got is not None and got.client is not None, got
    assert (got.by, got.forwarder, got.how, got.client.email) == ("bosa", BOSA_STAFF, "inline", CLIENT)
    assert got.subject == "Bon de commande" and got.text == TEXT
    mail = parse_mail(Mail(brussels(2027, 3, 1, 9), BOSA_STAFF, [WL], "TR: x", "y").to_bytes())
    assert got.client_mail(mail).sender == CLIENT and got.client_mail(mail).body_text == TEXT


@pytest.mark.parametrize("kwargs", [
    {"subject": "Bon de commande E-guichet"},  # no forward prefix, no attached message
    {"sender": "jean.inconnu@gmail.com"},  # a stranger's forward names no client
    {"to": (WL, CLIENT)},  # staff writing to the client, not forwarding to the bot
])
def test_only_a_forward_from_staff_to_the_watched_mailboxes_counts(kwargs):
    body = f"---------- Forwarded message ---------\nFrom: Marie <{CLIENT}>\nSubject: x\n\n{TEXT}"
    assert fwd(body) is not None
    assert fwd(body, **kwargs) is None


@pytest.mark.parametrize("from_line, problem", [
    ("From: Dubois Marie", "forward_no_address"),
    (f"From: Marie <{CLIENT}>, Jan <jan@sambreville.be>", "forward_no_address"),
    ("From: Marie <marie.dubois@sambreville>", "forward_invalid_address"),
    ("From: Marie <marie..dubois@sambreville.be>", "forward_invalid_address"),
    ("From: Marie <marie.dubois@test.test>", "forward_invalid_address"),  # a reserved domain
])
def test_a_from_line_that_names_no_valid_address_leaves_the_client_unknown(from_line, problem):
    got = fwd(f"-----Original Message-----\n{from_line}\nSubject: x\n\n{TEXT}")
    assert got is not None and got.client is None and got.problem == problem
    assert got.found == from_line.removeprefix("From: ")


def test_a_forward_without_header_lines_leaves_the_client_unknown():
    got = fwd(f"Voir ci-dessous.\n\n{TEXT}")
    assert (got.client, got.problem, got.found) == (None, "forward_no_sender", "")


def test_the_search_is_bounded_and_the_words_are_data(tmp_path):
    far = "Bla.\n" * 500 + f"---------- Forwarded message ---------\nFrom: <{CLIENT}>\nSubject: x\n\n{TEXT}"
    assert fwd(far).client is None  # past search_lines
    shipped = DEFAULT_FORWARD_RULES.read_text(encoding="utf-8")
    mine = tmp_path / "forwards.toml"
    mine.write_text(shipped.replace('lines = [', 'lines = ["mail van een klant", ').replace("search_lines = 400",
                                                                                          "search_lines = 1000"),
                    encoding="utf-8")
    rules = load_forward_rules(mine)
    assert fwd(far, rules=rules).client.email == CLIENT
    assert fwd(f"== Mail van een klant ==\nVan: <{CLIENT}>\nOnderwerp: x\n\n{TEXT}", rules=rules).client.email == CLIENT
    broken = tmp_path / "broken.toml"
    broken.write_text(shipped.replace("[labels]", "[labelz]"), encoding="utf-8")
    with pytest.raises(RulesError, match="labels"):
        load_forward_rules(broken)
