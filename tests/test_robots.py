"""Robot detectors: for every rule, a mail that it finds and one that it must not find."""

import re
import time
import tomllib

import pytest

from mailbot.errors import RulesError
from mailbot.mail.parse import parse_mail
from mailbot.mail.robots import (
    DEFAULT_ROBOT_RULES,
    asks_something,
    auto_reply_reason,
    automatic_text_reason,
    bounce_reason,
    bulk_reason,
    load_robot_rules,
    null_return_path_reason,
    own_text,
    parse_robot_rules,
    quick_reply,
    robot_address_reason,
)

RULES = load_robot_rules()
CLIENT = ("From: Marie Dupont <marie.dupont@liege.be>", "Return-Path: <marie.dupont@liege.be>",
          "To: ecom-belgium@worldline.example", "Date: Tue, 12 Mar 2024 10:15:02 +0100",
          "Message-ID: <1@liege.be>")


def raw(*headers: str, body: str = "Bonjour,\r\n") -> bytes:
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def client(*extra: str, subject: str = "BOSA M1036 - Bon de commande", body: str = "Bonjour,\r\n"):
    return parse_mail(raw(*CLIENT, f"Subject: {subject}", *extra, body=body))


# ---------------------------------------------------------------- bounces

DSN = "\r\n".join([
    "--b", "Content-Type: text/plain", "", "Your message could not be delivered.",
    "--b", "Content-Type: message/delivery-status", "",
    "Reporting-MTA: dns; mx.liege.be", "", "Final-Recipient: rfc822; nobody@liege.be",
    "Action: failed", "Status: 5.1.1", "",
    "--b", "Content-Type: text/rfc822-headers", "", "From: ecom-belgium@worldline.example",
    "Subject: Bon de commande", "", "--b--", ""])

QMAIL = ("Hi. This is the qmail-send program at mx.liege.be.\r\n"
         "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
         "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
         "<nobody@liege.be>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
         "--- Below this line is a copy of the message.\r\n")


def test_multipart_report_delivery_status_is_a_bounce():
    dsn = parse_mail(raw("From: Mail Delivery System <MAILER-DAEMON@mx.liege.be>", "Return-Path: <>",
                         "Subject: Undelivered Mail Returned to Sender",
                         'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
                         body=DSN))
    assert bounce_reason(dsn, rules=RULES) == "multipart/report; report-type=delivery-status"
    receipt = parse_mail(raw(*CLIENT, "Subject: Lu : Bon de commande",
                             'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"',
                             body="--b\r\nContent-Type: text/plain\r\n\r\nlu\r\n--b--\r\n"))
    assert bounce_reason(receipt, rules=RULES) is None


def test_x_failed_recipients():
    assert bounce_reason(client("X-Failed-Recipients: nobody@liege.be"), rules=RULES) == "X-Failed-Recipients present"
    assert bounce_reason(client(), rules=RULES) is None


@pytest.mark.parametrize("sender, subject", [
    ("MAILER-DAEMON@mx.liege.be", "Undelivered Mail Returned to Sender"),
    ("postmaster@liege.be", "Delivery Status Notification (Failure)"),
    ("Mail Delivery Subsystem <mailer-daemon@googlemail.com>", "Delivery Status Notification (Delay)"),
    ("Mail Delivery System <Mailer-Daemon@mx.example.be>", "Mail delivery failed: returning message to sender"),
    ("Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@liege.be>", "Non remis : Bon de commande"),
    ("Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@gent.be>", "Onbestelbaar: Bestelbon"),
    ("postmaster@example.de", "Unzustellbar: Bestellung"),
    ("MAILER-DAEMON@mx.example.be", "failure notice"),
])
def test_bounce_subjects_from_robot_senders(sender, subject):
    mail = parse_mail(raw(f"From: {sender}", f"Subject: {subject}"))
    assert bounce_reason(mail, rules=RULES).startswith("delivery failure subject")


def test_bounce_subject_with_the_null_return_path():
    mail = parse_mail(raw("From: Systeembeheerder <beheer@gent.be>", "Return-Path: <>",
                          "Subject: Onbestelbaar: Bestelbon"))
    assert bounce_reason(mail, rules=RULES) == "delivery failure subject ('onbestelbaar') with Return-Path <>"


def test_a_client_writing_non_remis_is_not_a_bounce():
    assert bounce_reason(client(subject="Non remis : le formulaire ?"), rules=RULES) is None
    assert bounce_reason(client(subject="Undeliverable: help"), rules=RULES) is None
    robot_other_subject = parse_mail(raw("From: postmaster@liege.be", "Subject: Nouvelle adresse"))
    assert bounce_reason(robot_other_subject, rules=RULES) is None


def test_flufl_bounce_finds_a_non_standard_bounce_in_the_raw_mail():
    bounce = raw("From: MAILER-DAEMON@mx.liege.be", "Return-Path: <>", "Subject: Message status",
                 "To: ecom-belgium@worldline.example", body=QMAIL)
    mail = parse_mail(bounce)
    assert bounce_reason(mail, rules=RULES) is None  # nothing in the headers says so
    assert bounce_reason(mail, bounce, rules=RULES) == "flufl.bounce: permanent delivery failure for 1 recipient(s)"
    # the same text from a person (normal Return-Path) is not scanned: quoting a bounce is human
    human = raw(*CLIENT, "Subject: voici ce que j'ai recu", body=QMAIL)
    assert bounce_reason(parse_mail(human), human, rules=RULES) is None


def test_a_delivery_status_part_outside_a_report():
    bounce = raw("From: beheer@gent.be", "Return-Path: <>", "Subject: status",
                 'Content-Type: multipart/mixed; boundary="b"', body=DSN)
    assert bounce_reason(parse_mail(bounce), bounce, rules=RULES) == "message/delivery-status part present"


def test_flufl_is_bounded_on_hostile_mail():
    # Bare flufl.bounce is quadratic on both: its Netscape reader runs ".*<" over each line
    # (40 KB: 0.85 s, 100 KB: ~5 s) and its DSN reader parses field parameters with the
    # stdlib's quadratic parser (40,000 ';' after an open quote: ~2.5 s).
    text = "This Message was undeliverable due to the following reason:\r\n" + "x" * 100_000 + "\r\n"
    netscape = raw("From: MAILER-DAEMON@x.be", "Return-Path: <>", "Subject: x",
                   'Content-Type: multipart/mixed; boundary="b"',
                   body="--b\r\nContent-Type: text/plain\r\n\r\n" + text
                   + "--b\r\nContent-Type: text/plain\r\n\r\nend\r\n--b--\r\n")
    dsn = raw("From: MAILER-DAEMON@x.be", "Return-Path: <>", "Subject: x",
              'Content-Type: multipart/mixed; boundary="b"',
              body=DSN.replace("Final-Recipient: rfc822; nobody@liege.be",
                               'Final-Recipient: rfc822; "' + "a;" * 40_000))
    for hostile in (netscape, dsn):
        start = time.perf_counter()
        bounce_reason(parse_mail(hostile), hostile, rules=RULES)
        assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- automatic replies

@pytest.mark.parametrize("header, reason", [
    ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
    ("Auto-Submitted: Auto-Generated; owner-email=x@y.be", "Auto-Submitted: auto-generated"),
    ("X-Auto-Response-Suppress: All", "X-Auto-Response-Suppress: all"),
    ("X-Auto-Response-Suppress: DR, OOF, AutoReply", "X-Auto-Response-Suppress: autoreply, oof"),
    ("X-Autoreply: yes", "X-Autoreply: yes"),
    ("X-Autorespond: Out of office", "X-Autorespond: Out of office"),
    ("X-Autogenerated: Reply", "X-Autogenerated: Reply"),
    ("Precedence: auto_reply", "Precedence: auto_reply"),
    ("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
     "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent"),
])
def test_automatic_reply_headers(header, reason):
    assert auto_reply_reason(client(header), rules=RULES) == reason


@pytest.mark.parametrize("header", [
    "Auto-Submitted: no", "Auto-Submitted: No ; comment", "X-Auto-Response-Suppress: DR, RN, NRN",
    "X-Autoreply: no", "X-Autorespond: false", "X-Autogenerated: 0", "X-Mailer: Microsoft Outlook 16.0",
])
def test_headers_that_do_not_make_a_mail_automatic(header):
    assert auto_reply_reason(client(header), rules=RULES) is None


def test_a_read_receipt_is_automatic():
    receipt = parse_mail(raw(*CLIENT, "Subject: Lu : Bon de commande",
                             'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"',
                             body="--b\r\nContent-Type: text/plain\r\n\r\nlu\r\n--b--\r\n"))
    assert auto_reply_reason(receipt, rules=RULES).startswith("multipart/report; report-type=disposition-notification")


@pytest.mark.parametrize("subject, language", [
    ("Réponse automatique : BOSA M1036 - Bon de commande", "fr"),
    ("REPONSE AUTOMATIQUE: Bon de commande", "fr"),
    ("Absence du bureau", "fr"),
    ("Automatisch antwoord: Bestelbon", "nl"),
    ("Afwezig: Bestelbon", "nl"),
    ("Out of Office: Order form", "en"),
    ("Automatic reply: BOSA M1036", "en"),
    ("Autoreply: your mail", "en"),
    ("[EXTERNAL] Automatic reply: BOSA M1036", "en"),
    ("Abwesenheitsnotiz: Bestellung", "de"),
])
def test_out_of_office_subjects(subject, language):
    assert auto_reply_reason(client(subject=subject), rules=RULES) == f"subject looks like an out-of-office ({language})"


@pytest.mark.parametrize("subject", [
    "Re: Absence de paiement", "Absence de paiement sur le compte", "Afwezigheid van betaling",
    "RE: Réponse automatique : Bon de commande", "Question about the automatic reply",
    "Outofofficeplanning", "BOSA M1036 - Bon de commande",
])
def test_subjects_that_are_not_out_of_office(subject):
    assert auto_reply_reason(client(subject=subject), rules=RULES) is None


# ---------------------------------------------------------------- bulk and lists

@pytest.mark.parametrize("header, reason", [
    ("Precedence: bulk", "Precedence: bulk"), ("Precedence: List", "Precedence: list"),
    ("Precedence: junk", "Precedence: junk"), ("List-Id: BOSA news <news.bosa.be>", "List-Id present"),
    ("List-Unsubscribe: <mailto:unsubscribe@news.be>", "List-Unsubscribe present"),
    ("List-Post: <mailto:list@news.be>", "List-Post present"),
])
def test_bulk(header, reason):
    assert bulk_reason(client(header)) == reason


@pytest.mark.parametrize("header", ["Precedence: first-class", "List-Help: <mailto:x@y.be>", "X-Mailer: x"])
def test_not_bulk(header):
    assert bulk_reason(client(header)) is None


# ---------------------------------------------------------------- addresses and return path

@pytest.mark.parametrize("address", [
    "MAILER-DAEMON@mx.liege.be", "mailer-daemon", "postmaster@gent.be", "noreply@bosa.be",
    "no-reply@worldline.com", "No_Reply@x.be", "donotreply@x.be", "ne-pas-repondre@liege.be",
    "niet-antwoorden@gent.be", "noreply.epayment@bosa.be", "epayment-noreply@bosa.be",
    "noreply+12345@x.be", "epayment-request@lists.be", "owner-epayment@lists.be",
])
def test_robot_addresses(address):
    assert robot_address_reason(address, rules=RULES).startswith("robot address")


@pytest.mark.parametrize("address", [
    "info@snoreply.be", "snoreply@x.be", "noreplyer@x.be", "marie.dupont@liege.be",
    "requests@x.be", "owner@x.be", "-request@x.be", "postmasters-office@x.be", "",
])
def test_person_addresses(address):
    assert robot_address_reason(address, rules=RULES) is None


def test_null_return_path():
    assert null_return_path_reason(parse_mail(raw("From: a@b.be", "Return-Path: <>"))) == "Return-Path: <>"
    assert null_return_path_reason(client()) is None
    assert null_return_path_reason(parse_mail(raw("From: a@b.be"))) is None


# ---------------------------------------------------------------- the rules file

def _data() -> dict:
    return tomllib.loads(DEFAULT_ROBOT_RULES.read_text(encoding="utf-8"))


def test_the_rules_file_loads_and_staff_can_extend_it():
    rules = load_robot_rules()
    assert "reponse automatique" in rules.out_of_office["fr"]  # folded: no accents, no case
    data = _data()
    data["out_of_office"]["fr"].append("En congé")
    data["addresses"]["words"].append("robot")
    extended = parse_robot_rules(data)
    assert auto_reply_reason(client(subject="En congé jusqu'au 3 avril"), rules=extended) == \
        "subject looks like an out-of-office (fr)"
    assert auto_reply_reason(client(subject="En congé jusqu'au 3 avril"), rules=RULES) is None
    assert robot_address_reason("robot@x.be", rules=extended) == "robot address (robot)"


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("bounce"), "[bounce] is missing"),
    (lambda d: d["addresses"].pop("words"), "[addresses]: the key 'words' is missing"),
    (lambda d: d["out_of_office"].update(fr=[]), "[out_of_office]: 'fr' must be a non-empty list"),
    (lambda d: d["out_of_office"].update(nl="afwezig"), "[out_of_office]: 'nl' must be a non-empty list"),
    (lambda d: d["bounce"]["subjects"].append(3), "[bounce]: 'subjects' holds 3"),
    (lambda d: d["bounce"]["subjects"].append("  "), "[bounce]: 'subjects' holds '  '"),
    (lambda d: d["addresses"].update(wrods=["x"]), "[addresses]: unknown key(s) wrods"),
    (lambda d: d.update(extra={}), "unknown table(s) extra"),
])
def test_rules_mistakes_name_their_entry(change, message):
    data = _data()
    change(data)
    with pytest.raises(RulesError, match=re.escape(message)):
        parse_robot_rules(data, "rules/robots.toml")


def test_rules_file_errors(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_robot_rules(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[out_of_office\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_robot_rules(bad)


# ---------------------------------------------------------------- auto-responders that set no header

@pytest.mark.parametrize("subject, language", [
    ("Absent: BOSA M1036 - Bon de commande", "fr"),
    ("Absent : BOSA M1036 - Bon de commande", "fr"),
    ("Absente: Bon de commande", "fr"),
    ("Out of Office: BOSA M1036 - Bon de commande", "en"),
    ("Automatisch antwoord: BOSA M1036 - Bestelbon", "nl"),
    ("Réponse automatique : BOSA M1036 - Bon de commande", "fr"),
    ("Abwesenheitsnotiz: BOSA M1036 - Bestellung", "de"),
])
def test_out_of_office_subject_prefixes(subject, language):
    assert auto_reply_reason(client(subject=subject), rules=RULES) == f"subject looks like an out-of-office ({language})"


def _with_file(*headers: str, subject: str, text: str = "Bonjour,\r\n"):
    return parse_mail(raw(*CLIENT, *headers, f"Subject: {subject}", 'Content-Type: multipart/mixed; boundary="b"',
                          body="--b\r\nContent-Type: text/plain\r\n\r\n" + text + "--b\r\n"
                               "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=bon.pdf\r\n\r\n"
                               "%PDF-1.4\r\n--b--\r\n"))


def test_absent_subjects_count_only_without_attachment():
    """"Absent :" (new) never makes a mail with a file an auto-reply; older phrases keep counting."""
    assert auto_reply_reason(_with_file(subject="Absent : bon de commande"), rules=RULES) is None
    assert auto_reply_reason(_with_file(subject="Absente: bon de commande"), rules=RULES) is None
    assert auto_reply_reason(_with_file(subject="Afwezig: Bestelbon"), rules=RULES) == "subject looks like an out-of-office (nl)"
    assert auto_reply_reason(client(subject="Absent : bon de commande"), rules=RULES) == "subject looks like an out-of-office (fr)"


@pytest.mark.parametrize("subject", ["Absent lors de la signature", "Absentéisme", "RE: Absent: Bon de commande"])
def test_absent_counts_only_as_a_prefix_with_its_colon(subject):
    assert auto_reply_reason(client(subject=subject), rules=RULES) is None


OUT_OF_OFFICE = {
    "fr": "Bonjour,\r\nJe suis absent du bureau jusqu'au 15 mars inclus.\r\n"
          "En cas d'urgence, contactez le secrétariat au 071 26 02 00.\r\n",
    "nl": "Goedendag,\r\nIk ben afwezig tot en met 15 maart.\r\nVoor dringende zaken: 03 800 05 11\r\n",
    "en": "Thank you for your message, we will answer shortly.\r\n",
    "de": "Guten Tag,\r\nich bin bis 15. März nicht im Büro und habe keinen Zugriff auf meine E-Mails.\r\n",
}
REPLY = ("In-Reply-To: <mailbot.1@worldline.example>", "References: <mailbot.1@worldline.example>")


@pytest.mark.parametrize("language", sorted(OUT_OF_OFFICE))
def test_canned_texts_without_headers(language):
    mail = client(*REPLY, subject="RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande", body=OUT_OF_OFFICE[language])
    assert auto_reply_reason(mail, rules=RULES) is None  # no header, no telling subject
    reason = automatic_text_reason(mail, is_reply=True, rules=RULES)
    assert reason.startswith("the text looks like an ") and f"({language})" in reason


def test_canned_text_in_an_html_only_mail_with_typographic_apostrophes():
    body = "<html><body><p>Je suis absente du bureau jusqu\u2019au 15 mars.</p></body></html>"
    mail = client(*REPLY, "Content-Type: text/html; charset=utf-8", subject="RE: Bon de commande", body=body)
    assert automatic_text_reason(mail, is_reply=True, rules=RULES) == "the text looks like an out-of-office (fr): 'je suis absente'"


def test_a_canned_text_counts_only_in_a_reply_without_attachment_or_question():
    text = OUT_OF_OFFICE["fr"]
    # a first mail: a client telling when he is away
    assert automatic_text_reason(client(body=text), is_reply=False, rules=RULES) is None
    # a question: a client's
    asking = text + "Pouvez-vous m'envoyer le formulaire en néerlandais ?\r\n"
    assert automatic_text_reason(client(*REPLY, body=asking), is_reply=True, rules=RULES) is None
    # a question mark in a web address is no question
    link = text + "Voir https://www.sambreville.be/contact?service=finances\r\n"
    assert automatic_text_reason(client(*REPLY, body=link), is_reply=True, rules=RULES) is not None
    # a file: a client's
    with_file = parse_mail(raw(*CLIENT, *REPLY, "Subject: RE: Bon de commande", 'Content-Type: multipart/mixed; boundary="b"',
                               body="--b\r\nContent-Type: text/plain\r\n\r\n" + text + "--b\r\n"
                                    "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=bon.pdf\r\n\r\n"
                                    "%PDF-1.4\r\n--b--\r\n"))
    assert with_file.attachments and automatic_text_reason(with_file, is_reply=True, rules=RULES) is None


@pytest.mark.parametrize("quote", [
    "> Je suis absent du bureau jusqu'au 15 mars.",
    "Le lun. 1 mars 2027 à 09:00, Marie <marie@liege.be> a écrit :\r\n> Je suis absent du bureau.",
    "-----Original Message-----\r\nFrom: Marie\r\nJe suis absent du bureau jusqu'au 15 mars.",
    "De : Marie Dupont\r\nEnvoyé : lundi 1 mars 2027 09:00\r\nJe suis absent du bureau.",
    "Op ma 1 mrt 2027 om 09:00 schreef An <an@lier.be>:\r\nIk ben afwezig tot en met 15 maart.",
    "Am Mo., 1. März 2027 um 09:00 Uhr schrieb Marie <m@x.de>:\r\nIch bin bis 15. März nicht im Büro.",
    "On Mon, Mar 1, 2027 at 9:00 AM Marie <m@x.be>\r\nwrote:\r\nI am out of the office.",
])
def test_a_canned_text_only_in_the_quoted_mail_is_a_persons_reply(quote):
    mail = client(*REPLY, subject="RE: Bon de commande", body="Bien reçu, merci.\r\n\r\n" + quote + "\r\n")
    own = own_text(mail.body_text, rules=RULES)
    assert own.startswith("Bien reçu, merci.") and quote.splitlines()[-1] not in own  # a wrapped "wrote:" keeps a line
    assert automatic_text_reason(mail, is_reply=True, rules=RULES) is None


@pytest.mark.parametrize("body", [
    "Je suis absente jusqu'au 20/3, ma collègue x@commune.be reprend le dossier.",
    "Je serai absente demain.",
    "Ik ben met verlof tot maandag.",
    "Nous vous répondrons dès que possible.",
    "Nous vous répondrons rapidement.",
    "Votre message a bien été reçu.",
    "Wij hebben uw bericht goed ontvangen.",
    "Thanks, we will get back to you.",
    "Je suis absent du bureau. Merci de m'envoyer le bon de commande complété.",
    "Ik ben afwezig. Gelieve het formulier naar An te sturen.",
    "Je suis absent du bureau jusqu'au 15 mars. " + "Le dossier avance bien. " * 20,  # long: a person's
])
def test_what_people_write_is_no_canned_text(body):
    assert automatic_text_reason(client(*REPLY, subject="RE: Bon de commande", body=body + "\r\n"),
                                 is_reply=True, rules=RULES) is None


def test_requests_without_question_mark_ask_something():
    for text in ("Merci de m'envoyer le formulaire.", "Pouvez-vous le renvoyer.", "Gelieve het te sturen.",
                 "Kunt u het formulier sturen.", "Graag het formulier.", "Please send the form.",
                 "Bitte senden Sie das Formular."):
        assert asks_something(text), text
    assert not asks_something("Merci de votre message. Je suis absent du bureau.")
    assert not asks_something("Merci pour votre message.")


def test_the_senders_own_address_in_a_canned_text_counts_not():
    body = "Je suis absent du bureau jusqu'au 15 mars.\r\nmarie.dupont@liege.be\r\n"
    assert automatic_text_reason(client(*REPLY, body=body), is_reply=True, rules=RULES) is not None


def test_own_text_and_questions():
    assert own_text("Merci\n> Une question ?\n", rules=RULES) == "Merci"
    assert own_text("", rules=RULES) == ""
    assert asks_something("Quel onglet ?") and asks_something("Welk tabblad?")
    assert not asks_something("Voir www.x.be/?a=1 ou https://x.be/p?q=2")
    assert quick_reply(3, rules=RULES) and not quick_reply(3600, rules=RULES)


def test_the_canned_texts_are_rules_staff_can_extend():
    data = _data()
    data["out_of_office_text"]["fr"].append("Je profite de mes vacances")
    data["replies"]["automatic_within_seconds"] = 5
    extended = parse_robot_rules(data)
    mail = client(*REPLY, body="Je profite de mes vacances jusqu'au 3 avril.\r\n")
    assert automatic_text_reason(mail, is_reply=True, rules=extended) == \
        "the text looks like an out-of-office (fr): 'je profite de mes vacances'"
    assert automatic_text_reason(mail, is_reply=True, rules=RULES) is None
    assert not quick_reply(10, rules=extended)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("out_of_office_text"), "the table [out_of_office_text] is missing"),
    (lambda d: d.pop("out_of_office_without_attachment"), "the table [out_of_office_without_attachment] is missing"),
    (lambda d: d["acknowledgement_text"].update(en=[]), "[acknowledgement_text]: 'en' must be a non-empty list"),
    (lambda d: d["replies"].pop("quote_line_starts"), "[replies]: the key 'quote_line_starts' is missing"),
    (lambda d: d["replies"].update(automatic_within_seconds="60"), "[replies]: 'automatic_within_seconds' must be"),
    (lambda d: d["replies"].update(automatic_within_seconds=True), "[replies]: 'automatic_within_seconds' must be"),
    (lambda d: d["replies"].update(quote_starts=[">"]), "[replies]: unknown key(s) quote_starts"),
])
def test_canned_text_rules_mistakes_name_their_entry(change, message):
    data = _data()
    change(data)
    with pytest.raises(RulesError, match=re.escape(message)):
        parse_robot_rules(data, "rules/robots.toml")
