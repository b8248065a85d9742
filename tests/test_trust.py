"""Issue 10's attacks on who is writing, each with the headers a receiving server writes.

The sandbox's SMTP server stamps Authentication-Results as a receiving server does
(mailbot/transport/stamp.py: a From aligned with the envelope sender passes DMARC, a forged one
fails); `Mail.delivered()` is that stamp for mail fed to the pipeline without a server, and the
last test sends through the server itself into Dovecot. The sandbox configuration trusts the
stamp (authserv-id sandbox.localhost), as a production one trusts its own receiving server.

Attacks: a forged client From (dmarc=fail), a forged Worldline From in an inbox, dossier
squatting by project name, a stranger at the client's free-mail provider; and the legitimate
paths they must leave working: staff mail in the Sent folder or authenticated from a staff
address, colleagues at the organisation's own domain, a copy that vouches for a mail an
earlier copy did not.
"""

import datetime as dt
import json
from types import SimpleNamespace

import pytest
from mailworld import World, bot_log, local_smtp, wait_for  # noqa: F401 - fixtures
from sqlmodel import Session, select

from mailbot.answers.digest import digest_context
from mailbot.answers.reasons import Reason
from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.dossiers.process import last_form
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.mail.authn import AuthStatus
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels, jpeg_bytes, scan_pdf
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Contact, Deadline, Decision, Dossier, Event, FormCheckRecord, Message, OutboxMail

FORM_RULES = load_rules()
SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
WL_STAFF = SETTINGS.mailboxes["worldline"].staff[0]
CLIENT = "marie.dubois@sambreville.be"
ATTACKER = "attacker@attacker-host.com"
FORGER = "bounce@attacker-host.com"  # the envelope sender of a forged mail: the attacker's own server
CLIENT_IBAN = "BE71 0961 2345 6769"  # the sample form's
ATTACKER_IBAN = "BE96 0689 9999 9905"
SUBJECT = "BOSA M1036 - Bon de commande – E-guichet"
AT = brussels(2027, 3, 1, 9)


def later(hours: float) -> dt.datetime:
    return AT + dt.timedelta(hours=hours)


@pytest.fixture
def ctx(tmp_path):
    return Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/trust.sqlite"), max_attempts=1)


def form_mail(tag, sender=CLIENT, subject=SUBJECT, at=AT, envelope_from=None, to=(WL,), cc=(BOSA,), **values):
    form = fill_form("fr", complete_values("fr", **({"project_name": "E-guichet"} | values)), rules=FORM_RULES)
    return Mail(at, sender, list(to), subject, "Bonjour, ci-joint le bon de commande.", cc=list(cc),
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<{tag}@mail.example.net>",
                envelope_from=envelope_from)


def note_mail(tag, sender, subject, body="Bonjour, où en est le dossier ?", at=AT, envelope_from=None, to=(WL,),
              cc=(), attachments=()):
    return Mail(at, sender, list(to), subject, body, cc=list(cc), attachments=list(attachments),
                message_id=f"<{tag}@mail.example.net>", envelope_from=envelope_from)


def feed(ctx, mail, at=None, seen=None, stamped=True):
    """Into `seen` as the sandbox's server delivers it (stamped), or put there unstamped."""
    seen = seen or Seen("worldline")
    raw = mail.delivered() if stamped else mail.to_bytes()
    return handle(raw, seen, at or mail.at, ctx)


def outbox(ctx, cause=None):
    with Session(ctx.engine) as s:
        query = select(OutboxMail).order_by(OutboxMail.id)
        if cause is not None:
            query = query.where(OutboxMail.cause_pk == cause)
        # a note's reason in English (its detail: the note itself is in the team's language)
        return [(o.purpose, json.loads(o.recipients), o.body_text + " " + str(json.loads(o.detail).get("reason", "")))
                for o in s.exec(query)]


def dossier(ctx, reference="EPAY-2027-0001"):
    with Session(ctx.engine) as s:
        found = s.exec(select(Dossier).where(Dossier.reference == reference)).one()
        contacts = {c.email: c.role for c in s.exec(select(Contact).where(Contact.dossier_id == found.id))}
        events = [(e.kind, e.detail) for e in s.exec(select(Event).where(Event.dossier_id == found.id)
                                                     .order_by(Event.id))]
        deadlines = {d.name: d.state for d in s.exec(select(Deadline).where(Deadline.dossier_id == found.id))}
        form = last_form(s, found)
        forms = len(s.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == found.id)).all())
        return SimpleNamespace(row=found, contacts=contacts, events=events, deadlines=deadlines, form=form,
                               forms=forms)


def message(ctx, pk):
    with Session(ctx.engine) as s:
        return s.get(Message, pk)


def assert_only_a_note(ctx, outcome, *words, team=WL):
    """The mail caused one needs_human note to the staff of `team`, naming `words`, and nothing
    else; or, a note on the dossier having gone to them already that day, nothing (the digest
    lists the mail: notes to staff are bundled, one per dossier per day)."""
    sent = outbox(ctx, outcome.message_pk)
    if not sent:
        with Session(ctx.engine) as s:
            reasons = [d.reason for d in s.exec(select(Decision).where(Decision.message_pk == outcome.message_pk))]
        assert any(r.startswith("limit: a note to staff on this dossier") for r in reasons), reasons
        return
    [(purpose, to, body)] = sent
    assert (purpose, to) == ("needs_human", [team])
    for w in words:
        assert w in " ".join(body.split()), body


# ---------------------------------------------------------------- a forged client From

@pytest.mark.parametrize("how, envelope_from, stamped, reason", [
    ("sent from the attacker's server", FORGER, True, "DMARC fail for sambreville.be at sandbox.localhost"),
    ("with no stamp at all", None, False, "No Authentication-Results from sandbox.localhost"),
])
def test_a_forged_client_from_is_applied_nowhere_and_learns_nothing(ctx, how, envelope_from, stamped, reason):
    feed(ctx, form_mail("client-1"))
    before = dossier(ctx)
    assert outbox(ctx) == [("form_complete", [CLIENT], outbox(ctx)[0][2])]
    # In the client's thread, her From, a form with the attacker's IBAN and technical contact.
    forged = form_mail("forged-1", subject=f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(2), envelope_from=envelope_from,
                       settlement_iban=ATTACKER_IBAN, technical_contact_email=ATTACKER)
    if stamped:
        # with an Authentication-Results of its own claiming the server's pass: the server removes it
        forged.headers["Authentication-Results"] = "sandbox.localhost; dmarc=pass header.from=sambreville.be"
        raw = forged.delivered()
        assert raw.count(b"Authentication-Results") == 1 and b"dmarc=fail" in raw
    else:
        raw = forged.to_bytes()
    outcome = handle(raw, Seen("worldline"), later(2), ctx)
    u = outcome.understanding
    assert outcome.dossier == "EPAY-2027-0001" and u.unlinked_sender and u.change is None
    assert not u.sender_auth.authenticated and u.sender_auth.reason == reason
    after = dossier(ctx)
    assert after.contacts == before.contacts and ATTACKER not in after.contacts
    assert after.form.values["settlement_iban"] == CLIENT_IBAN and after.forms == before.forms == 1
    assert after.row.form_status == "complete" and after.deadlines == {"prevalidation": "open"}
    assert after.events[len(before.events):] == [
        ("unlinked_sender_mail", f"from a sender not authenticated: {reason} (order_form); a person decides")]
    recorded = message(ctx, outcome.message_pk)
    assert (recorded.sender_auth, recorded.sender_authenticated, recorded.sender_auth_reason) == \
        ("fail" if stamped else "unknown_server", False, reason)
    assert_only_a_note(ctx, outcome, f"the sender is not authenticated ({reason}); it changed no dossier")
    # The attacker then asks from his own address (authenticated: it is his): nothing either.
    ask = note_mail("ask-1", ATTACKER, "RE: [EPAY-2027-0001] suite ?", at=later(3))
    asked = feed(ctx, ask)
    assert asked.understanding.sender_auth.authenticated and asked.understanding.unlinked_sender
    assert_only_a_note(ctx, asked, "a sender not linked to the dossier wrote")
    assert all(ATTACKER not in to for _, to, _ in outbox(ctx))
    # Staff see the forged mail and why in the digest.
    with Session(ctx.engine) as s:
        listed = digest_context(s, "worldline", later(24), ctx.calendars["public"], ctx.settings.process.zone)["needs_person"]
    assert [(m.reason, m.dossier) for m in listed if m.subject == forged.subject] == \
        [(Reason("not_authenticated", {"detail": reason}), "EPAY-2027-0001")]


def test_an_unauthenticated_new_client_opens_nothing_until_a_copy_vouches_for_it(ctx):
    """The client's form reaches BOSA's inbox unstamped (its server stamps nothing) before the
    Worldline inbox's stamped copy: the first is filed in no dossier, with a note; the second
    opens the dossier and gets the answer, once."""
    mail = form_mail("new-1")
    first = feed(ctx, mail, seen=Seen("bosa"), stamped=False)
    assert first.dossier is None and first.kind == "submission"
    with Session(ctx.engine) as s:
        assert s.exec(select(Dossier)).all() == []
    assert_only_a_note(ctx, first, "No Authentication-Results from sandbox.localhost", "it opened no dossier", team=BOSA)
    second = feed(ctx, mail, at=later(0.01), seen=Seen("worldline"))
    assert not second.duplicate and second.dossier == "EPAY-2027-0001"
    assert second.understanding.sender_auth.status is AuthStatus.PASS
    assert [p for p, _, _ in outbox(ctx, second.message_pk)] == ["needs_human", "form_complete"]
    assert dossier(ctx).contacts[CLIENT] == "sender"
    third = feed(ctx, mail, at=later(0.02), seen=Seen("worldline", "INBOX", 1, 9))
    assert third.duplicate and len(outbox(ctx)) == 2
    with Session(ctx.engine) as s:
        assert len(s.exec(select(Message)).all()) == 1


# ---------------------------------------------------------------- a forged Worldline From

def staff_reply(tag, sender, at, body="Votre bon de commande est complet.", **kw):
    return Mail(at, sender, [CLIENT], f"RE: [EPAY-2027-0001] {SUBJECT}", body, cc=[BOSA],
                message_id=f"<{tag}@worldline.localhost>", in_reply_to="<client-1@mail.example.net>", **kw)


@pytest.mark.parametrize("sender", [WL, WL_STAFF])
def test_a_forged_worldline_from_in_an_inbox_changes_nothing(ctx, sender):
    feed(ctx, form_mail("client-1"))
    before = dossier(ctx)
    # Into Worldline's inbox (Bcc), from the attacker's server, with a form of his own.
    forged = staff_reply("forged-wl", sender, later(1), envelope_from=FORGER)
    forged.attachments = [("Bon de commande v2.xlsx", fill_form("fr", complete_values(
        "fr", project_name="E-guichet", settlement_iban=ATTACKER_IBAN, technical_contact_email=ATTACKER),
        rules=FORM_RULES), XLSX)]
    outcome = feed(ctx, forged)
    u = outcome.understanding
    assert u.kind != "staff" and u.staff_party is None and u.change is None
    after = dossier(ctx)
    assert (after.row.prevalidated, after.row.access_sent) == (False, False)
    assert after.deadlines == {"prevalidation": "open"}
    assert after.form.values["settlement_iban"] == CLIENT_IBAN and after.contacts == before.contacts
    why = "a mail in the name of worldline staff is not authenticated (DMARC fail for worldline.localhost at sandbox.localhost)"
    assert_only_a_note(ctx, outcome, why, "it changed nothing")
    # The real reply, found in the Sent folder, meets the deadline.
    sent = feed(ctx, staff_reply("real-wl", sender, later(2)), seen=Seen("worldline", "Sent"), stamped=False)
    assert sent.kind == "staff" and sent.understanding.sender_auth.method == "sent_folder"
    assert dossier(ctx).row.prevalidated and dossier(ctx).deadlines == {"prevalidation": "met"}
    # The client's signed form and ID: the encoding deadline runs; a forged mail does not stop it.
    feed(ctx, note_mail("signed-1", CLIENT, f"RE: [EPAY-2027-0001] {SUBJECT}", "voici", at=later(3),
                        attachments=[("scan_001.pdf", scan_pdf(), "application/pdf"),
                                     ("IMG_2041.jpg", jpeg_bytes(), "image/jpeg")]))
    assert dossier(ctx).deadlines == {"prevalidation": "met", "encoding": "open"}
    feed(ctx, staff_reply("forged-wl-2", sender, later(4), "Vos accès de production sont envoyés.", envelope_from=FORGER))
    assert not dossier(ctx).row.access_sent and dossier(ctx).deadlines["encoding"] == "open"
    # Staff's own mail to the client with BOSA in copy, authenticated at BOSA's inbox: it counts.
    real = feed(ctx, staff_reply("real-wl-2", sender, later(5), "Vos accès de production sont envoyés."),
                seen=Seen("bosa"))
    assert real.kind == "staff" and real.understanding.sender_auth.method == "dmarc"
    assert dossier(ctx).row.access_sent and dossier(ctx).deadlines == {"prevalidation": "met", "encoding": "met"}


def test_a_staff_mail_first_seen_unauthenticated_counts_when_its_sent_copy_comes(ctx):
    """BOSA's inbox (its server stamps nothing) gets the staff reply before the watcher of
    Worldline's Sent folder sees it: the Sent copy files it as staff's, and meets the deadline."""
    feed(ctx, form_mail("client-1"))
    reply = staff_reply("wl-1", WL_STAFF, later(1))
    first = feed(ctx, reply, seen=Seen("bosa"), stamped=False)
    assert first.kind != "staff" and dossier(ctx).deadlines == {"prevalidation": "open"}
    sent = feed(ctx, reply, at=later(1.1), seen=Seen("worldline", "Sent"), stamped=False)
    assert not sent.duplicate and sent.kind == "staff"
    assert dossier(ctx).row.prevalidated and dossier(ctx).deadlines == {"prevalidation": "met"}
    assert feed(ctx, reply, at=later(1.2), seen=Seen("worldline", "Sent", 3, 4), stamped=False).duplicate


# ---------------------------------------------------------------- squatting

def test_squatting_a_project_by_name_gets_the_squatter_nothing_of_the_clients(ctx):
    # The attacker first: a form for the client's project, naming her as business contact.
    squat = feed(ctx, form_mail("squat-1", sender=ATTACKER, business_contact_email=CLIENT,
                                technical_contact_email=ATTACKER, settlement_iban=ATTACKER_IBAN))
    assert squat.dossier == "EPAY-2027-0001"
    # The client's real form: her own dossier, not the attacker's.
    real = feed(ctx, form_mail("client-1", at=later(1)))
    assert (real.dossier, real.understanding.matched_by) == ("EPAY-2027-0002", "none")
    assert [(p, to) for p, to, _ in outbox(ctx, real.message_pk)] == [("form_complete", [CLIENT])]
    theirs, hers = dossier(ctx, "EPAY-2027-0001"), dossier(ctx, "EPAY-2027-0002")
    assert hers.contacts == {CLIENT: "sender", "it-support@sambreville.be": "technical",
                             "comptabilite@sambreville.be": "billing"}
    assert hers.form.values["settlement_iban"] == CLIENT_IBAN
    # Her next mail names the project only: filed in her dossier.
    docs = feed(ctx, note_mail("signed-1", CLIENT, SUBJECT, "voici les documents signés", at=later(2),
                               attachments=[("scan_001.pdf", scan_pdf(), "application/pdf")]))
    assert (docs.dossier, docs.understanding.matched_by) == ("EPAY-2027-0002", "project")
    # The attacker's next form by project name goes to his own dossier; hers keeps her IBAN.
    again = feed(ctx, form_mail("squat-2", sender=ATTACKER, at=later(3), settlement_iban=ATTACKER_IBAN,
                                technical_contact_email="other@attacker-host.com"))
    assert (again.dossier, again.understanding.matched_by) == ("EPAY-2027-0001", "project")
    hers = dossier(ctx, "EPAY-2027-0002")
    assert hers.form.values["settlement_iban"] == CLIENT_IBAN and ATTACKER not in hers.contacts
    assert theirs.row.id != hers.row.id
    # What reached the attacker is about his own dossier only.
    with Session(ctx.engine) as s:
        to_him = [o.subject for o in s.exec(select(OutboxMail)) if ATTACKER in json.loads(o.recipients)]
    assert to_him and all("[EPAY-2027-0001]" in subject for subject in to_him)
    # The digest shows two dossiers claiming one project.
    with Session(ctx.engine) as s:
        context = digest_context(s, "worldline", later(24), ctx.calendars["public"], ctx.settings.process.zone)
    assert [(c.project_name, c.references) for c in context["claimed_twice"]] == \
        [("E-guichet", ["EPAY-2027-0001", "EPAY-2027-0002"])]
    text = ctx.renderer.render("digest", "en", context | {"dossier": None}).text
    assert "TWO DOSSIERS CLAIM ONE PROJECT (1)" in text and "- E-guichet: EPAY-2027-0001, EPAY-2027-0002" in text


def test_a_colleague_names_the_project_a_stranger_cannot(ctx):
    feed(ctx, form_mail("client-1", technical_contact_email="dev@webagency.be"))
    question = "Une question sur notre dossier."
    colleague = feed(ctx, note_mail("c-1", "secretariat@sambreville.be", f"RE: {SUBJECT}", question, at=later(1)))
    assert (colleague.dossier, colleague.understanding.matched_by) == ("EPAY-2027-0001", "project")
    assert dossier(ctx).contacts["secretariat@sambreville.be"] == "colleague"
    # An address only named in the form does not make its domain's people the client's colleagues.
    agency = feed(ctx, note_mail("a-1", "boss@webagency.be", f"RE: {SUBJECT}", question, at=later(2)))
    assert agency.dossier is None and agency.understanding.matched_by == "claimed"
    assert "boss@webagency.be" not in dossier(ctx).contacts


# ---------------------------------------------------------------- colleagues

@pytest.mark.parametrize("domain", ["yahoo.be", "hotmail.nl", "gmx.de", "proximus.be"])
def test_a_stranger_at_the_clients_free_mail_provider_is_no_colleague(ctx, domain):
    client = f"marie.dubois@{domain}"
    feed(ctx, form_mail("client-1", sender=client, business_contact_email=client))
    stranger = f"jean.curieux@{domain}"
    ask = feed(ctx, note_mail("ask-1", stranger, f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(1)))
    assert ask.understanding.sender_auth.authenticated and ask.understanding.unlinked_sender
    assert_only_a_note(ctx, ask, "a sender not linked to the dossier wrote")
    form = feed(ctx, form_mail("takeover", sender=stranger, subject=f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(2),
                               business_contact_email=stranger, settlement_iban=ATTACKER_IBAN))
    assert form.understanding.unlinked_sender and form.understanding.change is None
    assert stranger not in dossier(ctx).contacts and dossier(ctx).form.values["settlement_iban"] == CLIENT_IBAN
    assert all(stranger not in to for _, to, _ in outbox(ctx))


def test_a_colleague_is_linked_only_when_authenticated(ctx):
    feed(ctx, form_mail("client-1"))
    colleague = "secretariat@sambreville.be"
    forged = feed(ctx, form_mail("c-forged", sender=colleague, subject=f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(1),
                                 envelope_from=FORGER, settlement_iban=ATTACKER_IBAN))
    assert forged.understanding.unlinked_sender and colleague not in dossier(ctx).contacts
    assert_only_a_note(ctx, forged, "DMARC fail for sambreville.be at sandbox.localhost")
    real = feed(ctx, form_mail("c-real", sender=colleague, subject=f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(2),
                               postal_code=None))
    assert not real.understanding.unlinked_sender and dossier(ctx).contacts[colleague] == "colleague"
    assert [(p, to) for p, to, _ in outbox(ctx, real.message_pk)] == [("form_incomplete", [colleague])]


# ---------------------------------------------------------------- replay, as the issue tried it

def test_replay_a_forged_worldline_mail_and_an_exported_sent_folder(tmp_path, capsys):
    """`mailbot replay` reads authentication as live: the forged Worldline mail (stamped
    dmarc=fail by the receiving server) changes nothing; staff's reply exported from the Sent
    folder (no stamp: Sent holds what staff wrote) meets the deadline."""
    inbox, sent = tmp_path / "export" / "INBOX", tmp_path / "export" / "Sent"
    inbox.mkdir(parents=True)
    sent.mkdir()
    (inbox / "1.eml").write_bytes(form_mail("client-1").delivered())
    forged = staff_reply("forged-wl", WL, later(1), envelope_from=FORGER)
    forged.to, forged.cc = [WL], []
    (inbox / "2.eml").write_bytes(forged.delivered())
    (inbox / "3.eml").write_bytes(staff_reply("unstamped-wl", WL, later(2)).to_bytes())  # no stamp, not in Sent
    (sent / "4.eml").write_bytes(staff_reply("real-wl", WL, later(3)).to_bytes())
    db = tmp_path / "replay.sqlite"
    assert main(["replay", "--json", "--db", f"sqlite:///{db}", "--until", "2027-03-01T18:00",
                 str(tmp_path / "export")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    got = [(e["message_id"].split("@")[0], e["kind"], e["mailboxes"], e.get("not_authenticated"))
           for e in lines if e["event"] == "received"]
    assert got == [
        ("client-1", "submission", ["bosa", "worldline"], None),
        ("forged-wl", "reply", ["worldline"], "DMARC fail for worldline.localhost at sandbox.localhost"),
        ("unstamped-wl", "reply", ["bosa"], "No Authentication-Results from sandbox.localhost"),
        ("real-wl", "staff", ["worldline"], None),
    ]
    [summary] = [e for e in lines if e["event"] == "dossier"]
    assert summary["deadlines"][0]["state"] == "met" and summary["came"][-1] == "staff"
    notes = [e for e in lines if e["event"] == "sent" and e["purpose"] == "needs_human"]
    assert [n["to"] for n in notes] == [[WL], [BOSA]]  # the staff of the inbox each was found in


# ---------------------------------------------------------------- live: the sandbox's SMTP server into Dovecot

def test_live_mail_stamped_by_the_sandbox_smtp_server(world, imap_connect):
    """Every mail goes through the LocalSmtp, which stamps it, into Dovecot; the bot reads it
    there. The client's form is answered; her From forged from another server, and Worldline's,
    get staff a note and change nothing; staff's reply in the Sent folder meets the deadline."""
    world.start()
    world.send(form_mail("live-1").to_bytes())
    wait_for(lambda: world.answers(), what="the answer to the client")
    forged = form_mail("live-forged", subject=f"RE: [EPAY-2027-0001] {SUBJECT}", at=later(1),
                       settlement_iban=ATTACKER_IBAN, technical_contact_email=ATTACKER).to_bytes()
    world.send(forged, mail_from=FORGER)
    forged_wl = staff_reply("live-forged-wl", WL, later(2)).to_bytes()
    world.send(forged_wl, mail_from=FORGER, to=[WL])
    wait_for(lambda: world.count(OutboxMail, OutboxMail.purpose == "needs_human") == 2, what="two notes to staff")
    client = imap_connect(*world.users["worldline"])
    client.select_folder("INBOX", readonly=True)
    uid = client.search(["HEADER", "Message-ID", "live-forged@mail.example.net"])[0]
    head = client.fetch([uid], ["BODY.PEEK[HEADER]"])[uid][b"BODY[HEADER]"]
    assert b"Authentication-Results: sandbox.localhost; spf=pass smtp.mailfrom=attacker-host.com; dkim=none; " \
           b"dmarc=fail (From not aligned with MAIL FROM) header.from=sambreville.be" in head
    with world.session() as s:
        d = s.exec(select(Dossier)).one()
        assert (d.prevalidated, d.form_status) == (False, "complete")
        assert s.exec(select(Deadline.state)).all() == ["open"]
        assert ATTACKER not in s.exec(select(Contact.email)).all()
        notes = s.exec(select(OutboxMail).where(OutboxMail.purpose == "needs_human")).all()
        # to the staff of the inbox the bot read the mail in first (the forged client's went to both)
        assert all(json.loads(n.recipients) in ([WL], [BOSA]) for n in notes)
        bodies = " ".join(" ".join(n.body_text.split()) for n in notes)
        assert "not authenticated (DMARC fail for sambreville.be at sandbox.localhost)" in bodies
        assert "not authenticated (DMARC fail for worldline.localhost at sandbox.localhost)" in bodies
    assert [(purpose, r) for e in world.smtp.envelopes
            for r in e.rcpt_tos if (purpose := _purpose(e)) and r not in (WL, BOSA)] == [("form_complete", CLIENT)]
    world.append("worldline", staff_reply("live-real-wl", WL, later(3)).to_bytes(), folder="Sent")
    wait_for(lambda: world.count(Deadline, Deadline.state == "met") == 1, what="the deadline met by the Sent copy")


def _purpose(envelope):
    import email

    return email.message_from_bytes(envelope.data)["X-Mailbot-Purpose"]


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    yield w
    w.stop()
