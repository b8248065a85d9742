"""The retention job on a database filled by the real pipeline, through the real `mailbot`
command: what is purged, what stays, when, and the daemon's daily run."""

import datetime as dt
from pathlib import Path

import pytest
from privacy_world import (  # noqa: F401
    PERSONAL,
    SETTINGS,
    db,
    found,
    mailbot,
    season_db,
    session_on,
    sql,
    texts,
)
from sqlmodel import select

from mailbot.cli import main
from mailbot.config import Retention, load_settings, parse_settings
from mailbot.retention import months_before
from mailbot.store.models import (
    Contact,
    Dossier,
    Event,
    FormCheckRecord,
    Message,
    OutboxMail,
)

pytestmark = pytest.mark.integration  # servers or processes in every test

ROOT = Path(__file__).resolve().parents[1]


def test_months_before_keeps_the_day_or_takes_the_months_last():
    assert months_before(dt.datetime(2028, 8, 1, 3, tzinfo=dt.timezone.utc), 18) == \
        dt.datetime(2027, 2, 1, 3, tzinfo=dt.timezone.utc)
    assert months_before(dt.datetime(2028, 3, 31, tzinfo=dt.timezone.utc), 1) == \
        dt.datetime(2028, 2, 29, tzinfo=dt.timezone.utc)


def test_retention_dry_run_changes_nothing_and_says_what_would_go(db):
    before = texts(db)
    done = mailbot("retention", "--dry-run", "--db", f"sqlite:///{db}", "--at", "2028-02-01T03:00")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "dry run, nothing changed" in lines[0]
    # Sambreville's access was sent on 2027-01-20: closed for 12 months; the others are not.
    assert [line.split()[:2] for line in lines[1:] if line.strip().startswith("EPAY")] == [["EPAY-2027-0001", "closed"]]
    assert "would purge" in done.stdout and "contacts" in done.stdout
    assert texts(db) == before


def test_retention_purges_closed_then_dormant_dossiers_and_keeps_their_history(db, capsys):
    url = f"sqlite:///{db}"
    assert found(db, PERSONAL) == PERSONAL  # all there before
    with session_on(db) as s:
        kinds_before = sorted((e.dossier_id, e.kind, e.at) for e in s.exec(select(Event)))
        mails_before = sorted((m.key, m.received_at, m.kind, m.dossier_id) for m in s.exec(select(Message)))

    assert main(["retention", "--apply", "--db", url, "--at", "2028-02-01T03:00"]) == 0
    with session_on(db) as s:
        sambre, lier = (s.exec(select(Dossier).where(Dossier.reference == r)).one()
                        for r in ("EPAY-2027-0001", "EPAY-2027-0002"))
        assert s.exec(select(Contact).where(Contact.dossier_id == sambre.id)).all() == []
        assert {f.values for f in s.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == sambre.id))} == {"{}"}
        mails = s.exec(select(Message).where(Message.dossier_id == sambre.id)).all()
        assert mails and all(m.subject == "" for m in mails)
        # Staff's own address stays (their mail is not a client's data); the clients' go.
        assert {m.sender for m in mails} == {None, *SETTINGS.mailboxes["worldline"].staff}
        answers = s.exec(select(OutboxMail).where(OutboxMail.dossier_id == sambre.id)).all()
        assert answers and all(a.body_text == a.body_html == a.subject == "" for a in answers)
        assert all("@sambreville.be" not in a.recipients for a in answers)
        assert all(a.message_id and a.sent_at for a in answers)  # what went out, and when, stays
        purged = s.exec(select(Event).where(Event.dossier_id == sambre.id, Event.kind == "personal_data_purged")).one()
        assert purged.detail.startswith("closed, last activity 2027-01-20: removed ")
        # The open dossiers are not touched yet.
        assert s.exec(select(Contact).where(Contact.dossier_id == lier.id)).all()
        assert any("BE71" in f.values for f in s.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == lier.id)))
    assert "EPAY-2027-0001  closed" in capsys.readouterr().out

    # A second run the same day finds nothing more to do.
    assert main(["retention", "--apply", "--db", url, "--at", "2028-02-01T04:00"]) == 0
    assert "no dossier is due" in capsys.readouterr().out

    # Eighteen months without mail: every dossier is dormant; the mail outside dossiers went already.
    assert main(["retention", "--apply", "--db", url, "--at", "2028-08-01T03:00"]) == 0
    out = capsys.readouterr().out
    assert "EPAY-2027-0002  dormant" in out and "EPAY-2027-0003  dormant" in out and "EPAY-2027-0001" not in out
    assert found(db, PERSONAL) == []
    with session_on(db) as s:
        events = sorted((e.dossier_id, e.kind, e.at) for e in s.exec(select(Event)) if e.kind != "personal_data_purged")
        assert events == kinds_before  # every event kept, with its kind and time
        assert sorted((m.key, m.received_at, m.kind, m.dossier_id) for m in s.exec(select(Message))) == mails_before
        assert len(s.exec(select(Event).where(Event.kind == "personal_data_purged")).all()) == 4
        references = [d.reference for d in s.exec(select(Dossier).order_by(Dossier.id))]
    assert references == ["EPAY-2027-0001", "EPAY-2027-0002", "EPAY-2027-0003", "EPAY-2027-0004"]


def test_retention_holds_a_dossier_whose_mail_is_not_sent_yet(db, capsys):
    sql(db, "UPDATE outbox SET state = 'pending' WHERE id = (SELECT min(id) FROM outbox WHERE dossier_id = 1)")
    assert main(["retention", "--apply", "--db", f"sqlite:///{db}", "--at", "2028-02-01T03:00"]) == 0
    assert "EPAY-2027-0001  closed   last activity 2027-01-20: held: 1 of its mails not sent yet" in capsys.readouterr().out
    assert found(db, ["marie.dubois@sambreville.be", "BE71 0961 2345 6769"])


def test_the_daemon_runs_the_retention_every_day(db):
    from mailbot.daemon import Daemon
    from mailbot.jobs import JOBS

    data = SETTINGS.model_dump(mode="json")
    data["smtp"] = {"host": "127.0.0.1", "port": 1, "security": "plain"}
    data["database"] = {"url": f"sqlite:///{db}"}
    data["retention"] = {"time": "04:15:00"}
    daemon = Daemon(parse_settings(data))
    try:
        job = daemon.scheduler().get_job("retention")
        fields = {f.name: str(f) for f in job.trigger.fields}
        assert (fields["hour"], fields["minute"], fields["day_of_week"]) == ("4", "15", "*")
        JOBS["retention"](daemon.ctx, dt.datetime(2028, 8, 1, 2, tzinfo=dt.timezone.utc))
    finally:
        daemon.engine.dispose()
    assert found(db, PERSONAL) == []



def test_the_example_configuration_documents_the_retention_defaults():
    assert load_settings(ROOT / "config.example.toml").retention == Retention()
