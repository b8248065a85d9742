"""A client's mail that BOSA's service manager forwards to ecom-belgium (as an attached message,
or inline under the forward's header lines) is the client's: the client named in it is answered
with BOSA in copy and the forward is recorded in the dossier; when the bot cannot tell who the
client is, a person is asked. Only a forward from the bot's own or staff mailboxes counts."""

import datetime as dt
import email.utils
import json
from email.message import EmailMessage

import pytest
from sqlmodel import Session, select

from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Contact, Decision, Event, OutboxMail
from mailbot.transport.stamp import stamp

SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
BOSA_STAFF = SETTINGS.mailboxes["bosa"].staff[0]
CLIENT = "marie.dubois@sambreville.be"
AT = brussels(2027, 3, 1, 9)
SUBJECT = "BOSA M1036 - Bon de commande – E-guichet"
FORM = fill_form("fr", complete_values("fr", project_name="E-guichet"), rules=load_rules())


@pytest.fixture
def ctx(tmp_path):
    c = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/f.sqlite"), max_attempts=1)
    yield c
    c.engine.dispose()


def client_mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Marie Dubois <{CLIENT}>"
    msg["To"] = BOSA
    msg["Subject"] = SUBJECT
    msg["Date"] = email.utils.format_datetime(AT - dt.timedelta(hours=2))
    msg["Message-ID"] = "<orig1@sambreville.be>"
    msg.set_content("Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande complété.\n\nMarie Dubois")
    msg.add_attachment(FORM, maintype="application", subtype=XLSX.split("/")[1], filename="Bon de commande.xlsx")
    return msg


def forward(body: str, *, sender: str = f"Service manager ePayment <{BOSA_STAFF}>", subject: str = f"TR: {SUBJECT}",
            attach_message: bool = False, attach_form: bool = True, to: str = WL) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(AT)
    msg["Message-ID"] = "<fwd1@bosa.localhost>"
    msg.set_content(body)
    if attach_message:
        msg.add_attachment(client_mail())  # message/rfc822
    elif attach_form:
        msg.add_attachment(FORM, maintype="application", subtype=XLSX.split("/")[1], filename="Bon de commande.xlsx")
    # as the sandbox's SMTP server delivers it: stamped, the forwarder's own envelope (authenticated)
    return stamp(msg.as_bytes(), email.utils.parseaddr(sender)[1])


GMAIL = ("Pour suite utile.\n\n---------- Forwarded message ---------\nFrom: Marie Dubois <marie.dubois@sambreville.be>\n"
         f"Date: Mon, Mar 1, 2027 at 7:02 AM\nSubject: {SUBJECT}\nTo: <{BOSA}>\n\n\nBonjour,\n\n"
         "Veuillez trouver ci-joint notre bon de commande complété.\n\nMarie Dubois\n")
OUTLOOK_FR = ("Bonjour,\n\nÀ traiter.\n\n________________________________\nDe : Dubois Marie <marie.dubois@sambreville.be>\n"
              f"Envoyé : lundi 1 mars 2027 07:02\nÀ : ePayment BOSA <{BOSA}>\nObjet : {SUBJECT}\n\n"
              "Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande complété.\n")
APPLE_NL = ("Ter info.\n\nBegin doorgestuurd bericht:\n\nVan: Marie Dubois <marie.dubois@sambreville.be>\n"
            f"Onderwerp: {SUBJECT}\nDatum: 1 maart 2027 om 07:02:00 CET\nAan: {BOSA}\n\n"
            "Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande complété.\n")
ORIGINE = ("Pour vous.\n\n-------- Message d'origine --------\nDe : marie.dubois@sambreville.be\n"
           f"Date : 01/03/2027 07:02 (GMT+01:00)\nÀ : {BOSA}\nObjet : {SUBJECT}\n\n"
           "Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande complété.\n")


def outbox(ctx):
    with Session(ctx.engine) as s:
        return s.exec(select(OutboxMail).order_by(OutboxMail.id)).all()


@pytest.mark.parametrize("raw", [
    pytest.param(forward("Pour suite utile.", attach_message=True), id="attached message"),
    pytest.param(forward(GMAIL), id="gmail inline"),
    pytest.param(forward(OUTLOOK_FR), id="outlook fr"),
    pytest.param(forward(APPLE_NL, subject=f"Doorst: {SUBJECT}"), id="apple mail nl"),
    pytest.param(forward(ORIGINE, subject=f"Fwd: {SUBJECT}", sender=BOSA), id="message d'origine, shared address"),
])
def test_a_client_mail_forwarded_by_bosa_is_answered_to_the_client_with_bosa_in_copy(ctx, raw):
    outcome = handle(raw, Seen("worldline"), AT, ctx)
    assert outcome.dossier == "EPAY-2027-0001" and outcome.kind == "submission"
    [answer] = outbox(ctx)
    assert answer.purpose == "form_complete"
    assert json.loads(answer.recipients) == [CLIENT] and json.loads(answer.cc) == [BOSA]
    assert answer.subject == f"RE: [EPAY-2027-0001] {SUBJECT}"
    with Session(ctx.engine) as s:
        events = s.exec(select(Event).where(Event.message_pk == outcome.message_pk)).all()
        contacts = s.exec(select(Contact.email)).all()
    forwarded = [e for e in events if e.kind == "forwarded_by_bosa"]
    assert len(forwarded) == 1 and CLIENT in forwarded[0].detail
    assert f"forwarded by {BOSA_STAFF}" in forwarded[0].detail or f"forwarded by {BOSA} " in forwarded[0].detail
    assert CLIENT in contacts and BOSA not in contacts and BOSA_STAFF not in contacts


def test_a_forward_into_a_known_dossier_links_the_client_bosa_named(ctx):
    first = forward("Pour suite utile.", attach_message=True)
    handle(first, Seen("worldline"), AT, ctx)
    # the client's second mail, forwarded again a day later: the same dossier, answered again
    later = forward(GMAIL.replace("Marie Dubois <marie.dubois@sambreville.be>", "Jan Peeters <jan.peeters@sambreville.be>"),
                    subject=f"TR: RE: [EPAY-2027-0001] {SUBJECT}").replace(b"<fwd1@", b"<fwd2@")
    outcome = handle(later, Seen("worldline"), AT + dt.timedelta(days=1), ctx)
    assert outcome.dossier == "EPAY-2027-0001"
    answers = outbox(ctx)
    assert [json.loads(a.recipients) for a in answers] == [[CLIENT], ["jan.peeters@sambreville.be"]]


@pytest.mark.parametrize("body, code, said", [
    pytest.param(OUTLOOK_FR.replace("Dubois Marie <marie.dubois@sambreville.be>", "Dubois Marie"), "forward_no_address",
                 "Dubois Marie", id="a name and no address"),
    pytest.param(GMAIL.replace("marie.dubois@sambreville.be", "marie.dubois@sambreville"), "forward_invalid_address",
                 "marie.dubois@sambreville", id="an address that cannot be"),
    pytest.param("Voir ci-dessous, je n'ai pas gardé l'en-tête.\n\nBonjour, voici notre bon de commande.",
                 "forward_no_sender", "", id="no header lines"),
])
def test_when_the_client_cannot_be_told_a_person_is_asked(ctx, body, code, said):
    outcome = handle(forward(body), Seen("worldline"), AT, ctx)
    mails = outbox(ctx)
    assert [(m.purpose, json.loads(m.recipients)) for m in mails] == [("needs_human", [WL])]
    note = mails[0]
    assert json.loads(note.detail)["reason"]["code"] == code
    assert said in note.body_text and "transféré" in note.body_text  # the worldline team reads French
    with Session(ctx.engine) as s:
        reasons = s.exec(select(Decision.reason).where(Decision.message_pk == outcome.message_pk)).all()
    assert any(r.startswith(f"a mail forwarded by {BOSA_STAFF}: its client cannot be told") for r in reasons)


def test_a_stranger_forwarding_someones_mail_names_no_client(ctx):
    raw = forward(GMAIL, sender="Jean Inconnu <jean.inconnu@gmail.com>", attach_form=False)
    handle(raw, Seen("worldline"), AT, ctx)
    assert all(CLIENT not in m.recipients + m.cc for m in outbox(ctx))
    with Session(ctx.engine) as s:
        assert CLIENT not in s.exec(select(Contact.email)).all()
        assert not s.exec(select(Event).where(Event.kind == "forwarded_by_bosa")).all()


def test_bosa_forwarding_a_staff_mail_or_writing_to_a_client_is_staff_mail(ctx):
    # BOSA's reply to the client, quoting the client: not a forward to the bot
    reply = forward(GMAIL, subject=f"RE: {SUBJECT}", to=CLIENT, attach_form=False)
    handle(reply, Seen("worldline"), AT, ctx)
    assert outbox(ctx) == []
    # BOSA forwarding a Worldline colleague's mail: no client in it
    staff = forward(GMAIL.replace("Marie Dubois <marie.dubois@sambreville.be>",
                                  f"Morad <{SETTINGS.mailboxes['worldline'].staff[0]}>"), attach_form=False)
    handle(staff.replace(b"<fwd1@", b"<fwd3@"), Seen("worldline"), AT, ctx)
    assert outbox(ctx) == []


def test_answers_that_do_not_copy_bosa_do_when_bosa_forwarded_the_mail(ctx):
    from mailbot.season import Mail, scan_pdf

    direct = Mail(AT, CLIENT, [WL], SUBJECT, "Bonjour, ci-joint.", cc=[BOSA], message_id="<d1@sambreville.be>",
                  attachments=[("Bon de commande.xlsx", FORM, XLSX)])
    handle(direct.delivered(), Seen("worldline"), AT, ctx)
    signed = GMAIL.replace(f"Subject: {SUBJECT}", "Subject: RE: [EPAY-2027-0001] documents signés")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = BOSA_STAFF, WL, "TR: RE: [EPAY-2027-0001] documents signés"
    msg["Message-ID"] = "<fwd9@bosa.localhost>"
    msg.set_content(signed)
    msg.add_attachment(scan_pdf(), maintype="application", subtype="pdf", filename="bon de commande signé.pdf")
    later = AT + dt.timedelta(days=1)
    handle(stamp(msg.as_bytes(), BOSA_STAFF), Seen("worldline"), later, ctx)
    answers = outbox(ctx)
    assert [(a.purpose, json.loads(a.recipients), json.loads(a.cc)) for a in answers] == [
        ("form_complete", [CLIENT], [BOSA]), ("signed_incomplete", [CLIENT], [BOSA])]
    # the same documents straight from the client: no copy to BOSA, as before
    again = Mail(later, CLIENT, [WL], "RE: [EPAY-2027-0001] documents signés", "voici", message_id="<d2@sambreville.be>",
                 attachments=[("bon de commande signé.pdf", scan_pdf(), "application/pdf")])
    handle(again.delivered(), Seen("worldline"), later + dt.timedelta(days=1), ctx)
    assert json.loads(outbox(ctx)[-1].cc) == []
