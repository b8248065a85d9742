"""The first start on mailboxes that already hold months of mail (mailbot/history.py), on a real
Dovecot and a real SMTP server: the old mail is filed, nothing is sent for it, no alarm is
raised about its deadlines, and the next digest lists the dossiers so imported once."""

import datetime as dt
import email
import json
import time

import pytest
from imapclient import IMAPClient
from mailworld import BOSA, WL, World, form_mail, purpose, wait_for
from sqlmodel import Session, select

from mailbot.config import parse_settings
from mailbot.history import LAPSED, NOT_ANSWERED
from mailbot.jobs import run_digest, run_sweep
from mailbot.season import Mail
from mailbot.store.models import Deadline, Decision, Dossier, Event, Installation, Message, OutboxMail

pytestmark = pytest.mark.integration  # servers or processes in every test

NOW = dt.datetime.now(dt.timezone.utc)
HEADINGS = {"en": "imported from history", "fr": "importés de l'historique", "nl": "geïmporteerd uit de geschiedenis"}
INCOMPLETE = {"expected_yearly_transactions": "beaucoup", "technical_contact_phone": ""}


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    del w.data["daemon"]["history_before"]  # the first start decides what is history
    w.settings = parse_settings(w.data)
    yield w
    w.stop()


def client(n):
    return f"contact{n}@commune{n}.be"


def history(days_ago_first=200):
    """(mail, INTERNALDATE) of months of mail: order forms (complete and not), the clients'
    replies in their threads, out-of-office replies, strangers' questions, and one form of two
    hours ago whose deadline still runs at the start."""
    out = []

    def add(mail, when):
        mail.at = when
        out.append((mail, when))

    for n in range(30):
        came = NOW - dt.timedelta(days=days_ago_first - 6 * n, hours=n % 7)
        form = form_mail(n, project=f"Paiements {n}", sender=client(n), **(INCOMPLETE if n % 3 == 2 else {}))
        add(form, came)
        for k in range(2):  # "where is our file?", a few days later
            add(Mail(came, client(n), [WL], f"RE: {form.subject}", "Bonjour, où en est notre dossier ?", cc=[BOSA],
                     message_id=f"<reply{n}.{k}@commune{n}.be>", in_reply_to=form.message_id),
                came + dt.timedelta(days=2 + k, hours=3))
    for k in range(25):
        add(Mail(NOW, client(k), [WL], f"Réponse automatique : absent {k}", "Je suis absent.",
                 headers={"Auto-Submitted": "auto-replied"}, message_id=f"<ooo{k}@commune{k}.be>"),
            NOW - dt.timedelta(days=150 - 5 * k))
    for k in range(15):
        add(Mail(NOW, f"question{k}@gemeente{k}.be", [WL], "Vraag over de facturatie", "Hoeveel kost het?",
                 message_id=f"<question{k}@gemeente{k}.be>"), NOW - dt.timedelta(days=100 - 6 * k))
    add(form_mail(900, project="Dossier récent", sender=client(900)), NOW - dt.timedelta(hours=2))
    return sorted(out, key=lambda item: item[1])


def append_dated(world, box, mails, folder="INBOX"):
    """APPEND each mail with its own INTERNALDATE, on one connection; delivered (stamped) into
    any folder but Sent, which holds what staff wrote."""
    imap = IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=30)
    imap.login(*world.users[box])
    try:
        for mail, when in mails:
            imap.append(folder, mail.to_bytes() if folder == "Sent" else mail.delivered(), (), msg_time=when)
    finally:
        imap.logout()


def installation(world):
    with world.session() as s:
        return s.exec(select(Installation)).one()


def wake_sender(world):
    world.loop.call_soon_threadsafe(world.bot.sender.wake.set)


def test_first_start_files_history_silently_then_answers_new_mail(world):
    old = history()
    append_dated(world, "worldline", old)
    # The forms' copies to BOSA (in copy) are in its inbox too: the same messages.
    append_dated(world, "bosa", [(m, when) for m, when in old if BOSA in m.cc and m.attachments])
    assert len(old) >= 100
    world.start()
    wait_for(lambda: world.count(Message, Message.status == "processed") == len(old), timeout=120,
             what="the history filed")
    wake_sender(world)
    start = installation(world).first_started_at
    assert NOW - dt.timedelta(minutes=1) < start <= dt.datetime.now(dt.timezone.utc)

    # Filed: dossiers opened at the dates the forms came, every mail with its reason; nothing sent.
    with world.session() as s:
        dossiers = s.exec(select(Dossier)).all()
        assert len(dossiers) == 31 and all(d.opened_at < start for d in dossiers)
        assert {d.reference[:10] for d in dossiers} <= {f"EPAY-{y}-" for y in (NOW.year - 1, NOW.year)}
        decisions = s.exec(select(Decision)).all()
        assert len(decisions) == len(old) and {d.reason for d in decisions} == {NOT_ANSWERED}
        deadlines = s.exec(select(Deadline)).all()
        imported = [d for d in deadlines if d.state == LAPSED]
        running = [d for d in deadlines if d.state == "open"]
        assert len(imported) == 20 and all(d.due < start.date() for d in imported)
        assert len(running) == 1 and running[0].due >= start.date()  # the form of two hours ago
        assert len(s.exec(select(Event).where(Event.kind == "imported_from_history")).all()) == 31
    assert world.count(OutboxMail) == 0
    time.sleep(1.0)
    assert world.smtp.envelopes == []

    # No alarm about the past: the sweep finds nothing to warn about or escalate.
    run_sweep(world.bot.ctx, dt.datetime.now(dt.timezone.utc))
    assert world.count(OutboxMail) == 0

    # The digest (no reminder owed for waits that began in history) lists the imported dossiers, once.
    run_digest(world.bot.ctx, dt.datetime.now(dt.timezone.utc))
    with world.session() as s:
        queued = s.exec(select(OutboxMail)).all()
    assert sorted(o.purpose for o in queued) == ["digest", "digest"]
    assert all(json.loads(o.detail)["counts"]["imported"] == 31 for o in queued)
    for digest in queued:
        section = digest.body_text.lower().partition(HEADINGS[digest.language])[2]
        assert section and all(d.reference.lower() in section for d in dossiers), digest.body_text
    wake_sender(world)
    wait_for(lambda: len(world.smtp.envelopes) == 2, what="the two digests")
    assert sorted(r for e in world.smtp.envelopes for r in e.rcpt_tos) == sorted([WL, BOSA])
    run_digest(world.bot.ctx, dt.datetime.now(dt.timezone.utc))
    with world.session() as s:
        again = s.exec(select(OutboxMail).where(OutboxMail.id > max(o.id for o in queued))).all()
    assert [json.loads(o.detail)["counts"]["imported"] for o in again] == [0, 0]

    # Mail that comes after the start is answered.
    world.append("worldline", form_mail(1000, project="Après le démarrage").to_bytes())
    wait_for(lambda: world.answers(), what="the answer to the new mail")
    assert [purpose(e) for e in world.answers()] == ["form_complete"]

    # A restart is not a first start: nothing filed again, nothing answered twice; mail that
    # came before the first start is still history, mail after it is answered.
    messages = world.count(Message)
    world.stop()
    world.start()
    assert installation(world).first_started_at == start
    append_dated(world, "worldline", [(form_mail(1001, project="Oublié", sender=client(1001)),
                                       start - dt.timedelta(days=3))])
    world.append("worldline", form_mail(1002, project="Encore", sender=client(1002)).to_bytes())
    wait_for(lambda: world.answers(client(1002)), what="the answer after the restart")
    wait_for(lambda: world.count(Message, Message.message_id == "form1001@sambreville.be",
                                 Message.status == "processed"), what="the late-found old mail")
    wake_sender(world)
    assert world.answers(client(1001)) == [] and len(world.answers()) == 1
    assert world.count(Message) >= messages + 2
    with world.session() as s:
        assert s.exec(select(Decision.reason).join(Message, Message.id == Decision.message_pk)
                      .where(Message.message_id == "form1001@sambreville.be")).all() == [NOT_ANSWERED]


def test_history_before_sets_another_cut_off(world):
    """`[daemon] history_before`: mail before it is history, mail after it (even before the
    first start) is answered."""
    world.configure(daemon={"history_before": (NOW - dt.timedelta(days=10)).isoformat()})
    old = [(form_mail(1, project="Ancien", sender=client(1)), NOW - dt.timedelta(days=30)),
           (form_mail(2, project="Récent", sender=client(2)), NOW - dt.timedelta(days=5))]
    append_dated(world, "worldline", old)
    world.start()
    wait_for(lambda: world.answers(client(2)), what="the answer to the mail after the cut-off")
    wait_for(lambda: world.count(Message, Message.status == "processed") >= 2, what="both mails")
    wake_sender(world)
    assert world.answers(client(1)) == []
    answer = email.message_from_bytes(world.answers(client(2))[0].data)
    assert answer["In-Reply-To"] == "<form2@sambreville.be>"


# --- the same rules through the pipeline alone, on a simulated clock -----------------------------

def test_imported_deadlines_are_met_by_later_history_and_reminders_count_from_the_cut_off(tmp_path):
    from mailbot.config import load_settings
    from mailbot.context import Context
    from mailbot.pipeline import handle
    from mailbot.resources import SANDBOX_CONFIG
    from mailbot.season import brussels
    from mailbot.seen import Seen
    from mailbot.store.db import open_database

    settings = load_settings(SANDBOX_CONFIG)
    wl, bosa = settings.mailboxes["worldline"].address, settings.mailboxes["bosa"].address
    ctx = Context.load(settings, open_database(f"sqlite:///{tmp_path}/h.sqlite"))
    ctx.history_before = cut = brussels(2027, 3, 19, 9)
    uid = iter(range(1, 100))

    def feed(mail, arrived, folder="INBOX"):
        mail.at = arrived
        raw = mail.to_bytes() if folder == "Sent" else mail.delivered()  # delivered: stamped
        return handle(raw, Seen("worldline", folder, 1, next(uid), arrived), cut + dt.timedelta(hours=1), ctx)

    first = form_mail(1, project="Confirmé", sender=client(1))
    feed(first, brussels(2027, 3, 1, 9))
    feed(form_mail(2, project="Oublié", sender=client(2)), brussels(2027, 3, 2, 9))
    # Worldline confirms the first form late, still before the cut-off: the imported deadline is met.
    confirmation = Mail(cut, wl, [client(1)], f"RE: {first.subject}", "Votre bon de commande est complet.", cc=[bosa],
                        message_id="<wl1@worldline.localhost>", in_reply_to=first.message_id)
    outcome = feed(confirmation, brussels(2027, 3, 10, 15), folder="Sent")
    assert outcome.historical and outcome.dossier
    with Session(ctx.engine) as s:
        states = {s.get(Dossier, d.dossier_id).project_name: d.state for d in s.exec(select(Deadline))}
        assert states == {"Confirmé": "met", "Oublié": LAPSED}
        assert s.exec(select(Dossier).where(Dossier.project_name == "Confirmé")).one().prevalidated
        assert len(s.exec(select(Event).where(Event.kind == "deadline_imported")).all()) == 2
    assert outcome.understanding is not None and _outbox(ctx) == []

    # No alarm for the past; no reminder for waits that began before the cut-off...
    run_sweep(ctx, cut + dt.timedelta(days=3))
    run_digest(ctx, brussels(2027, 3, 22, 8, 30))
    assert sorted(_outbox(ctx)) == ["digest", "digest"]
    # ...but the reminder days count from it (reminder_days = 5 business days).
    run_digest(ctx, brussels(2027, 3, 29, 8, 30))
    assert sorted(_outbox(ctx)) == ["digest"] * 4 + ["reminder"] * 2

    # Mail after the cut-off is answered as ever.
    assert feed(form_mail(3, project="Nouveau", sender=client(3)), cut + dt.timedelta(minutes=5)).historical is False
    assert "form_complete" in _outbox(ctx)


def _outbox(ctx):
    with Session(ctx.engine) as s:
        return [o.purpose for o in s.exec(select(OutboxMail).order_by(OutboxMail.id))]


def test_an_installation_upgraded_keeps_its_first_start(tmp_path):
    """A database the daemon worked on before the migration: its first start is its first mail,
    so mail that came during the upgrade is not taken for history."""
    import sqlalchemy as sa
    from alembic import command

    from mailbot.store.db import alembic_config, open_database

    url = f"sqlite:///{tmp_path}/u.sqlite"
    command.upgrade(alembic_config(url), "0007")  # the schema before the installation's table
    first = dt.datetime(2027, 2, 1, 8, 0, 5, 123456, tzinfo=dt.timezone.utc)
    engine = sa.create_engine(url)
    with Session(engine) as s:  # that schema's columns, not today's model's
        for key, received in (("mid:a@b", first + dt.timedelta(days=3)), ("mid:c@d", first)):
            s.exec(sa.text("INSERT INTO message (key, content_hash, subject, received_at, kind_reason, "
                           "unlinked_sender, documents, defects, status, status_reason, attempts) "
                           "VALUES (:key, 'h', '', :at, '', 0, '', '', 'processed', '', 0)")
                   .bindparams(key=key, at=received.strftime("%Y-%m-%d %H:%M:%S.%f")))
        s.exec(sa.text("INSERT INTO folder_state (mailbox, folder, last_uid, last_error, reported_down) "
                       "VALUES ('worldline', 'INBOX', 2, '', 0)"))
        s.commit()
    engine.dispose()
    with Session(open_database(url)) as s:
        assert s.exec(select(Installation)).one().first_started_at == first
    fresh = open_database(f"sqlite:///{tmp_path}/fresh.sqlite")
    with Session(fresh) as s:
        assert s.exec(select(Installation)).all() == []  # a first start still to come
