"""Limits that hold (issue 10.6) and a new document that gets its answer (issue 12.2), through
the real pipeline (Context.load + handle) and the real scheduled jobs on a SQLite store."""

import datetime as dt
import json
import unicodedata

import idna
import pytest
from sqlmodel import Session, col, select

from mailbot.answers.digest import digest_context
from mailbot.answers.drafts import answer_draft, note_draft
from mailbot.answers.plan import Answer, StaffNote
from mailbot.answers.purposes import Purpose
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.jobs import run_digest
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels, scan_pdf
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Decision, Dossier, Event, Message, OutboxAddress, OutboxMail
from mailbot.transport.stamp import stamp

FORM_RULES = load_rules()
SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
AT = brussels(2027, 3, 1, 9)  # a Monday
SUBJECT = "BOSA M1036 - Bon de commande – E-guichet"
ZOE = "zoë@exämple.be"  # NFC, lower case
ZOE_FORMS = [ZOE, unicodedata.normalize("NFD", ZOE), "Zoë@Exämple.BE", unicodedata.normalize("NFD", "ZOË@EXÄMPLE.be"),
             "zoë@" + idna.encode("exämple.be").decode()]  # ... and its domain in punycode
CLIENT = "marie.dubois@sambreville.be"


@pytest.fixture
def ctx(tmp_path):
    return Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/l.sqlite"), max_attempts=1)


def raw(mail: Mail, sender: str | None = None) -> bytes:
    """The mail's bytes, its From replaced by `sender` as a mail program writes a non-ASCII
    address (UTF-8 in the header, RFC 6532); without `sender`, the mail has no From at all."""
    data = mail.to_bytes()
    head, sep, body = data.partition(b"\n\n")
    lines = head.split(b"\n")
    lines = [(b"From: " + sender.encode() if sender else None) if line.startswith(b"From: ") else line for line in lines]
    data = b"\n".join(line for line in lines if line is not None) + sep + body
    # as the sandbox's SMTP server delivers it: stamped (the sender's own envelope: DMARC aligned)
    return stamp(data, sender or mail.mail_from)


def feed(ctx, data: bytes, at: dt.datetime):
    return handle(data, Seen("worldline"), at, ctx)


def outbox(ctx, purpose=None) -> list[OutboxMail]:
    with Session(ctx.engine) as s:
        query = select(OutboxMail).order_by(OutboxMail.id)
        if purpose:
            query = query.where(OutboxMail.purpose == purpose)
        return list(s.exec(query))


def refused(ctx) -> list[str]:
    with Session(ctx.engine) as s:
        return list(s.exec(select(Decision.reason).where(Decision.answered == False)  # noqa: E712
                           .order_by(Decision.id)))


def announce(n: int, at: dt.datetime, subject: str = SUBJECT, attachments=()) -> Mail:
    """A client announcing the order form (attached or not)."""
    return Mail(at, "placeholder@example.be", [WL], subject, "Bonjour, veuillez trouver notre bon de commande ci-joint.",
                cc=[BOSA], message_id=f"<a{n}@example.be>", attachments=list(attachments))


def form_bytes(**changes) -> bytes:
    return fill_form("fr", complete_values("fr", **changes), rules=FORM_RULES)


# --- one person, however the address is written -------------------------------------------------

def test_a_non_ascii_address_in_every_form_gets_one_answer_not_fifteen(ctx):
    """Measured before: 15 answers in 14 minutes where 1 is allowed (the JSON-escaped address
    never matched the LIKE); and the NFD form was taken for a stranger (a note to staff each)."""
    for i in range(15):
        at = AT + dt.timedelta(minutes=i)
        feed(ctx, raw(announce(i, at), ZOE_FORMS[i % len(ZOE_FORMS)]), at)
    answers = outbox(ctx, "form_missing")
    assert len(answers) == 1 and json.loads(answers[0].recipients) == [ZOE]
    assert outbox(ctx, "needs_human") == []  # every form of the address is the linked client
    assert sum(r.startswith("limit: a form_missing answer already went") for r in refused(ctx)) == 14
    with Session(ctx.engine) as s:
        assert [(a.role, a.address) for a in s.exec(select(OutboxAddress))] == [("to", ZOE), ("cc", BOSA)]
        assert len(s.exec(select(Dossier)).all()) == 1


def test_the_daily_cap_per_address_holds_even_when_each_mail_brings_a_new_document(ctx):
    """The loop backstop: new files do not lift it (10 answers a day to one address)."""
    for i in range(13):
        at = AT + dt.timedelta(minutes=i)
        pdf = ("Bon de commande.pdf", scan_pdf(size=30_000 + i), "application/pdf")  # new bytes each time
        feed(ctx, raw(announce(i, at, attachments=[pdf]), ZOE_FORMS[i % len(ZOE_FORMS)]), at)
    assert len(outbox(ctx, "form_missing")) == SETTINGS.answers.per_address_per_day == 10
    assert sum(r == f"limit: 10 answers to {f} in the last 24 hours" for r in refused(ctx) for f in ZOE_FORMS) == 3


# --- issue 12.2: a second mail bringing a new document ---------------------------------------------

def test_form_announced_then_sent_as_pdf_gets_two_answers_and_a_resend_none(ctx):
    feed(ctx, raw(announce(1, AT), CLIENT), AT)
    later = AT + dt.timedelta(minutes=5)
    pdf = ("Bon de commande.pdf", scan_pdf(), "application/pdf")
    feed(ctx, raw(announce(2, later, attachments=[pdf]), CLIENT), later)
    answers = outbox(ctx, "form_missing")
    assert len(answers) == 2
    assert "ne contenait pas de pièce jointe" in answers[0].body_text  # nothing attached
    assert "pas au format Excel" in answers[1].body_text  # the Excel file is needed, not a PDF
    # The same PDF again (a loop resending what it got, or a second click): the limit holds.
    again = later + dt.timedelta(minutes=5)
    feed(ctx, raw(announce(3, again, attachments=[pdf]), CLIENT), again)
    assert len(outbox(ctx, "form_missing")) == 2
    assert refused(ctx)[-1].startswith("limit: a form_missing answer already went to " + CLIENT)


# --- reminders ----------------------------------------------------------------------------------

def business_mornings(ctx, start: dt.date, weeks: int):
    calendar = ctx.calendars[SETTINGS.schedule.calendar]
    day = start
    while day < start + dt.timedelta(weeks=weeks):
        if calendar.is_business_day(day):
            yield brussels(day.year, day.month, day.day, 8, 30)
        day += dt.timedelta(days=1)


def test_reminders_stop_at_the_cap_and_the_dossier_shows_as_dormant(ctx):
    feed(ctx, raw(announce(1, AT), CLIENT), AT)
    dormant_seen = None
    for morning in business_mornings(ctx, dt.date(2027, 3, 2), weeks=12):
        run_digest(ctx, morning)
        with Session(ctx.engine) as s:
            digest = digest_context(s, "worldline", morning, ctx.calendars["public"], ctx.settings.process.zone)
        if digest["dormant"] and dormant_seen is None:
            dormant_seen = (morning, digest["dormant"])
    reminders = outbox(ctx, "reminder")
    assert len(reminders) == SETTINGS.answers.max_reminders == 3
    assert {tuple(json.loads(r.recipients)) for r in reminders} == {(CLIENT,)}
    assert all(json.loads(r.detail)["waiting"] == ["order_form", "convention"] for r in reminders)
    morning, [row] = dormant_seen
    assert morning > reminders[-1].created_at and row.reference == "EPAY-2027-0001"
    assert row.waiting == [("client", "order_form"), ("client", "convention")]
    digest_mail = next(o for o in outbox(ctx, "digest") if o.created_at >= morning)
    assert "DORMANT DOSSIERS: NO MORE REMINDERS (1)" in digest_mail.body_text or \
        "EN SOMMEIL" in digest_mail.body_text  # the team's language
    with Session(ctx.engine) as s:
        [event] = s.exec(select(Event).where(Event.kind == "dossier_dormant")).all()
    assert event.detail == "no more reminders: 3 reminders about order_form, convention went unanswered"

    # The client sends the form at last: awake, off the dormant list, reminded about what is left.
    at = brussels(2027, 6, 1, 10)
    form = ("Bon de commande.xlsx", form_bytes(postal_code=None), XLSX)
    feed(ctx, raw(announce(2, at, attachments=[form]), CLIENT), at)
    morning = brussels(2027, 6, 2, 8, 30)
    run_digest(ctx, morning)
    with Session(ctx.engine) as s:
        assert digest_context(s, "worldline", morning, ctx.calendars["public"], ctx.settings.process.zone)["dormant"] == []
        assert s.exec(select(Dossier)).one().dormant_since is None
    later = list(business_mornings(ctx, dt.date(2027, 6, 3), weeks=2))
    for morning in later:
        run_digest(ctx, morning)
    new = outbox(ctx, "reminder")[3:]
    assert new and json.loads(new[0].detail)["waiting"] == ["corrected_order_form"]  # the convention had its 3


def test_an_address_named_in_a_form_that_never_wrote_gets_no_reminder(ctx):
    """A mail without a usable From named a business contact who never wrote: before, it opened
    a dossier and every reminder went to that address. No From, no authenticated sender (issue
    10): the mail is filed in no dossier, the digest lists it, and the named address gets nothing."""
    named = "jean.martin@fleurus.be"
    form = ("Bon de commande.xlsx", form_bytes(postal_code=None, business_contact_email=named), XLSX)
    outcome = feed(ctx, raw(announce(1, AT, attachments=[form]), None), AT)
    assert outcome.dossier is None and not outcome.understanding.sender_auth.authenticated
    for morning in business_mornings(ctx, dt.date(2027, 3, 2), weeks=4):
        run_digest(ctx, morning)
    assert outbox(ctx, "reminder") == []
    assert all(named not in o.recipients for o in outbox(ctx))
    with Session(ctx.engine) as s:  # staff see it in the digest, with why
        listed = digest_context(s, "worldline", brussels(2027, 3, 2, 8), ctx.calendars["public"], ctx.settings.process.zone)["needs_person"]
    assert len(listed) == 1, listed


def test_a_dossier_whose_writer_was_erased_falls_dormant_instead_of_reminding_anyone(ctx):
    """Nobody left who wrote to the dossier (the client asked to be forgotten): the contacts its
    form names get no reminder; the dossier is listed as dormant for a person."""
    from mailbot.erasure import forget

    form = ("Bon de commande.xlsx", form_bytes(postal_code=None, business_contact_email="jean.martin@fleurus.be"), XLSX)
    assert feed(ctx, raw(announce(1, AT, attachments=[form]), CLIENT), AT).dossier == "EPAY-2027-0001"
    with Session(ctx.engine) as s:
        forget(s, CLIENT, AT + dt.timedelta(hours=1))
        s.commit()
    for morning in business_mornings(ctx, dt.date(2027, 3, 2), weeks=4):
        run_digest(ctx, morning)
    assert outbox(ctx, "reminder") == []
    assert all("jean.martin@fleurus.be" not in o.recipients for o in outbox(ctx))
    with Session(ctx.engine) as s:
        [event] = s.exec(select(Event).where(Event.kind == "dossier_dormant")).all()
        assert event.detail == "no more reminders: nobody who wrote to the dossier to remind"


def test_reminders_go_to_the_one_who_wrote_not_the_contacts_a_form_names(ctx):
    form = ("Bon de commande.xlsx", form_bytes(postal_code=None, business_contact_email="jean.martin@fleurus.be",
                                               technical_contact_email="it@fleurus.be"), XLSX)
    feed(ctx, raw(announce(1, AT, attachments=[form]), unicodedata.normalize("NFD", ZOE)), AT)
    for morning in business_mornings(ctx, dt.date(2027, 3, 2), weeks=2):
        run_digest(ctx, morning)
    reminders = outbox(ctx, "reminder")
    assert reminders and {tuple(json.loads(r.recipients)) for r in reminders} == {(unicodedata.normalize("NFD", ZOE),)}


# --- dossiers opened per sender per day ----------------------------------------------------------

def test_the_fourth_dossier_from_one_sender_in_a_day_is_not_opened(ctx):
    cap = SETTINGS.answers.max_new_dossiers_per_sender_per_day
    assert cap == 3
    for i in range(cap + 2):
        at = AT + dt.timedelta(minutes=10 * i)
        form = ("Bon de commande.xlsx", form_bytes(project_name=f"Projet {i}"), XLSX)  # a new project each time
        mail = announce(i, at, subject=f"BOSA M1036 - Bon de commande – Projet {i}", attachments=[form])
        feed(ctx, raw(mail, ZOE_FORMS[i % len(ZOE_FORMS)]), at)
    with Session(ctx.engine) as s:
        assert len(s.exec(select(Dossier)).all()) == cap
        kept = s.exec(select(Message).where(col(Message.dossier_id).is_(None))).all()
        assert [m.message_id for m in kept] == ["a3@example.be", "a4@example.be"]
        digest = digest_context(s, "worldline", AT + dt.timedelta(hours=23), ctx.calendars["public"], ctx.settings.process.zone)
    expected = f"limit: 3 dossiers opened for {ZOE_FORMS[3].lower()} in the last 24 hours; filed in no dossier"
    assert expected in refused(ctx)
    listed = [(m.dossier, m.reason) for m in digest["needs_person"]]
    assert (None, expected) in listed and len(listed) == 2
    assert len(outbox(ctx, "form_complete")) == cap  # the held mails get no answer
    [note] = outbox(ctx, "needs_human")  # one note about that sender's mail in no dossier, not one per mail
    assert note.dossier_id is None
    assert sum(r.startswith("limit: a note to staff on this sender's mail in no dossier") for r in refused(ctx)) == 1
    # A day later the sender may open a dossier again.
    at = AT + dt.timedelta(days=1, minutes=1)
    form = ("Bon de commande.xlsx", form_bytes(project_name="Projet 9"), XLSX)
    feed(ctx, raw(announce(9, at, subject="BOSA M1036 - Bon de commande – Projet 9", attachments=[form]), ZOE), at)
    with Session(ctx.engine) as s:
        assert len(s.exec(select(Dossier)).all()) == cap + 1


# --- notes to staff, bundled ---------------------------------------------------------------------

def test_five_mails_from_a_stranger_into_one_dossier_give_one_note_that_day(ctx):
    feed(ctx, raw(announce(1, AT), CLIENT), AT)
    for i in range(5):
        at = AT + dt.timedelta(hours=1, minutes=i)
        mail = Mail(at, "x", [WL], "RE: [EPAY-2027-0001] mon dossier ?", "Où en est ce dossier ?",
                    message_id=f"<s{i}@gmail.com>")
        feed(ctx, raw(mail, "curieux@gmail.com"), at)
    notes = outbox(ctx, "needs_human")
    assert len(notes) == 1 and json.loads(notes[0].recipients) == [WL]
    assert sum(r.startswith("limit: a note to staff on this dossier already went") for r in refused(ctx)) == 4
    with Session(ctx.engine) as s:
        digest = digest_context(s, "worldline", AT + dt.timedelta(hours=20), ctx.calendars["public"], ctx.settings.process.zone)
    strangers = [m for m in digest["needs_person"] if m.sender == "curieux@gmail.com"]
    assert len(strangers) == 5  # the other four reach staff through the digest
    next_day = AT + dt.timedelta(days=1, hours=2)
    mail = Mail(next_day, "x", [WL], "RE: [EPAY-2027-0001] toujours rien ?", "Alors ?", message_id="<s9@gmail.com>")
    feed(ctx, raw(mail, "curieux@gmail.com"), next_day)
    assert len(outbox(ctx, "needs_human")) == 2


def test_mail_in_no_dossier_gives_one_note_per_sender_per_day(ctx):
    for i in range(3):
        at = AT + dt.timedelta(minutes=i)
        mail = Mail(at, "x", [WL], "Une question", "Bonjour, une question sur vos tarifs.", message_id=f"<q{i}@x.be>")
        feed(ctx, raw(mail, ZOE_FORMS[i]), at)
        mail = Mail(at, "x", [WL], "Une question", "Bonjour, une autre question.", message_id=f"<r{i}@x.be>")
        feed(ctx, raw(mail, "other.person@fleurus.be"), at)
    notes = outbox(ctx, "needs_human")
    assert len(notes) == 2
    with Session(ctx.engine) as s:
        abouts = sorted(s.exec(select(OutboxAddress.address).where(OutboxAddress.role == "about")).all())
    assert abouts == ["other.person@fleurus.be", ZOE]


# --- the sender's subject text ---------------------------------------------------------------------

SPAM = "CHEAP <b>PILLS</b> at pharma-spam.example " + "x" * 300


def test_the_subject_is_echoed_only_to_its_author_and_cut_for_staff(ctx):
    outcome = feed(ctx, raw(announce(1, AT, subject="Re: " + SPAM), CLIENT), AT)
    u = outcome.understanding
    answer = Answer(Purpose.FORM_MISSING, CLIENT, True, {"reason": "no_attachment", "detail": ""})
    own = answer_draft(answer, u, outcome.message_pk, AT, SETTINGS, ctx.renderer, ctx.language_words)
    assert "PILLS" in own.subject  # the author's thread, answered in it
    other = answer_draft(Answer(Purpose.FORM_MISSING, "jean.martin@fleurus.be", True, answer.data), u,
                         outcome.message_pk, AT, SETTINGS, ctx.renderer, ctx.language_words)
    assert "PILLS" not in other.subject and other.subject.startswith(f"RE: [{u.dossier.reference}] ")
    note = note_draft(StaffNote("worldline", "test"), u, outcome.message_pk, AT, SETTINGS, ctx.renderer)
    assert len(note.subject) < 140 and note.subject.endswith("…") and "\n" not in note.subject
    assert "&lt;b&gt;PILLS&lt;/b&gt;" in note.rendered.html and "<b>PILLS" not in note.rendered.html
    assert note.about == CLIENT


def test_the_migration_fills_the_addresses_of_the_mail_already_in_the_outbox(tmp_path):
    """An outbox written before 0007 (its JSON \\u-escaped, an NFD address) counts at once."""
    import sqlalchemy as sa
    from alembic import command

    from mailbot.store.db import alembic_config

    url = f"sqlite:///{tmp_path}/old.sqlite"
    engine = sa.create_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        for n in range(10):  # the day's 10 answers to her, already sent
            connection.execute(sa.text(
                "INSERT INTO outbox (message_id, purpose, sender, recipients, cc, subject, language, body_text,"
                " body_html, \"references\", detail, created_at, state, attempts, last_error, copy_owed) VALUES"
                " (:id, 'form_missing', :wl, :to, :cc, 's', 'fr', 't', 'h', '', '{}', '2027-03-01 07:00:00', 'sent',"
                " 1, '', 0)"),
                {"id": f"m{n}@x", "wl": WL, "to": json.dumps([unicodedata.normalize("NFD", "Zoë@Exämple.be")]),
                 "cc": json.dumps([BOSA, "[address removed]"])})
    ctx = Context.load(SETTINGS, open_database(url), max_attempts=1)
    with Session(ctx.engine) as s:
        rows = [(a.role, a.address) for a in s.exec(select(OutboxAddress).order_by(OutboxAddress.id))]
    assert rows == [("to", ZOE), ("cc", BOSA)] * 10
    # ... and the limits count them: her next mail that day gets no 11th answer.
    at = AT + dt.timedelta(hours=1)
    feed(ctx, raw(announce(1, at), ZOE), at)
    assert len(outbox(ctx)) == 10 and refused(ctx) == [f"limit: 10 answers to {ZOE} in the last 24 hours"]
