"""Running the bot: the sandbox `mailbot run`, shadow mode, the watchdog, `mailbot status`."""

import contextlib
import datetime as dt
import json
import re
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from mailworld import wait_for
from sqlmodel import Session, select

from mailbot.answers.digest import digest_context
from mailbot.cli import main
from mailbot.config import load_settings, parse_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.status import render_status, status
from mailbot.store.db import open_database
from mailbot.store.models import FolderState, OutboxMail
from mailbot.transport.sandbox import dovecot_available

FORM_RULES = load_rules()

SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
CLIENT = "marie.dubois@sambreville.be"


def form_mail(n=1, **changes):
    return Mail(brussels(2027, 3, 1, 9), CLIENT, [WL], "BOSA M1036 - Bon de commande – E-guichet", "ci-joint",
                cc=[BOSA], attachments=[("bdc.xlsx", fill_form("fr", complete_values("fr", **changes), rules=FORM_RULES), XLSX)],
                message_id=f"<op{n}@sambreville.be>")


def test_shadow_mode_sends_nothing_to_clients_and_shows_staff(tmp_path):
    shadow = SETTINGS.model_copy(update={"answers": SETTINGS.answers.model_copy(update={"shadow": True})})
    ctx = Context.load(shadow, open_database(f"sqlite:///{tmp_path}/s.sqlite"))
    handle(form_mail(postal_code=None).delivered(), Seen("worldline"), brussels(2027, 3, 1, 9), ctx)
    with Session(ctx.engine) as s:
        rows = s.exec(select(OutboxMail)).all()
        assert [(r.purpose, r.state) for r in rows] == [("form_incomplete", "shadow")]
        digest = digest_context(s, "worldline", brussels(2027, 3, 2, 8, 30), ctx.calendars["public"],
                                ctx.settings.process.zone)
    assert [(x.purpose, x.to) for x in digest["shadow"]] == [("form_incomplete", CLIENT)]


def _daemon(tmp_path, monkeypatch):
    from mailbot.daemon import Daemon

    monkeypatch.setenv("TEST_PW", "x")
    imap = {"host": "127.0.0.1", "port": 1, "user": "u", "security": "plain", "password_env": "TEST_PW"}
    settings = parse_settings({
        "mailboxes": {"worldline": {"address": WL, "imap": imap}, "bosa": {"address": BOSA, "imap": imap}},
        "smtp": {"host": "127.0.0.1", "port": 1, "security": "plain"},
        "database": {"url": f"sqlite:///{tmp_path}/w.sqlite"}, "daemon": {"watchdog_minutes": 10}})
    clock = {"now": dt.datetime(2027, 3, 1, 9, tzinfo=dt.timezone.utc)}
    return Daemon(settings, clock=lambda: clock["now"]), clock


def test_watchdog_reports_a_silent_mailbox_once_and_its_recovery(tmp_path, monkeypatch):
    daemon, clock = _daemon(tmp_path, monkeypatch)
    started = clock["now"]
    with Session(daemon.engine) as s:
        s.add(FolderState(mailbox="bosa", folder="INBOX", last_contact=started, last_error="ConnectionRefusedError"))
        s.commit()
    limit = dt.timedelta(minutes=10)

    def notes():
        with Session(daemon.engine) as s:
            return [(json.loads(o.detail)["down"], json.loads(o.recipients))
                    for o in s.exec(select(OutboxMail).where(OutboxMail.purpose == "watchdog"))]

    clock["now"] = started + dt.timedelta(minutes=5)
    daemon._watch(started, limit)
    assert notes() == []
    clock["now"] = started + dt.timedelta(minutes=11)
    daemon._watch(started, limit)
    daemon._watch(started, limit)
    assert notes() == [(True, [BOSA, WL])]
    with Session(daemon.engine) as s:
        row = s.exec(select(FolderState)).one()
        row.last_contact = clock["now"]
        s.add(row)
        s.commit()
    daemon._watch(started, limit)
    assert notes() == [(True, [BOSA, WL]), (False, [BOSA, WL])]
    daemon.db.shutdown()


def test_status_report(tmp_path, capsys):
    ctx = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/st.sqlite"))
    handle(form_mail().delivered(), Seen("worldline", "INBOX", 7, 3), brussels(2027, 3, 1, 9), ctx)
    with Session(ctx.engine) as s:
        s.add(FolderState(mailbox="worldline", folder="INBOX", uidvalidity=7, last_uid=3,
                          last_contact=brussels(2027, 3, 1, 9)))
        s.commit()
    report = status(ctx.engine, SETTINGS, now=brussels(2027, 3, 5, 12))
    assert report["outbox"] == {"pending": 1}
    assert report["deadlines_overdue"] == [{"dossier": "EPAY-2027-0001", "deadline": "prevalidation",
                                           "due": "2027-03-04", "overdue": True}]
    text = render_status(report)
    assert "worldline  INBOX    last UID 3" in text and "EPAY-2027-0001 prevalidation due 2027-03-04" in text
    assert main(["status", "--json", "--db", f"sqlite:///{tmp_path}/st.sqlite"]) == 0
    assert json.loads(capsys.readouterr().out)["folders"][0]["last_uid"] == 3


def watchers_connected(database: Path, watchers: int = 4) -> bool:
    """The daemon's watchers have each talked to the server (read from its database, read-only)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            [(talked,)] = db.execute("SELECT count(*) FROM folder_state WHERE last_contact IS NOT NULL")
            return talked >= watchers
    except sqlite3.Error:  # not there yet, or not migrated yet
        return False


@pytest.mark.integration
@pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed")
def test_mailbot_run_without_config_is_a_sandbox_a_person_can_write_to():
    with tempfile.TemporaryDirectory(prefix="mailbot-run-") as folder:
        proc = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--sandbox", folder],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            banner = ""
            while not banner.endswith("Ctrl-C stops.\n") and (line := proc.stdout.readline()):
                banner += line
            smtp_port = int(re.search(r"SMTP 127\.0\.0\.1:(\d+)", banner).group(1))
            imap_port = int(re.search(r"IMAP 127\.0\.0\.1:(\d+)", banner).group(1))
            passwords = json.loads((Path(folder) / "credentials.json").read_text())
            # How to point a mail program at it: every setting, and a line to try.
            assert re.search(rf"IMAP +host 127\.0\.0\.1 +port {imap_port} ", banner), banner
            assert re.search(rf"SMTP +host 127\.0\.0\.1 +port {smtp_port} ", banner), banner
            for user in ("worldline", "bosa", "outside"):
                assert re.search(rf"user {user} +password {re.escape(passwords[user])} ", banner), banner
            swaks = re.search(r"swaks --server 127\.0\.0\.1:(\d+) .*--attach @(\S+\.xlsx)", banner)
            assert swaks and int(swaks.group(1)) == smtp_port and Path(swaks.group(2)).is_file(), banner
            wait_for(lambda: watchers_connected(Path(folder) / "mailbot.sqlite"), timeout=30,
                     what="the watchers to connect")
            raw = form_mail(postal_code=None).to_bytes().replace(b"\n", b"\r\n")
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                smtp.sendmail(CLIENT, [WL, BOSA], raw)
            deadline = time.monotonic() + 20
            found = []
            while not found and time.monotonic() < deadline:
                with IMAPClient("127.0.0.1", port=imap_port, ssl=False, timeout=10) as client:
                    client.login("outside", passwords["outside"])
                    client.select_folder("INBOX", readonly=True)
                    found = client.search(["HEADER", "X-Mailbot-Purpose", "form_incomplete"])
                time.sleep(0.2)
            assert found, "the client's answer never reached the sandbox"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0


def test_a_person_marks_prevalidation_done(tmp_path, capsys):
    from mailbot.store.models import Deadline, Dossier

    url = f"sqlite:///{tmp_path}/mk.sqlite"
    ctx = Context.load(SETTINGS, open_database(url))
    handle(form_mail().delivered(), Seen("worldline"), brussels(2027, 3, 1, 9), ctx)
    assert main(["mark", "epay-2027-0001", "prevalidated", "--by", "morad", "--db", url]) == 0
    assert "EPAY-2027-0001: prevalidated, marked by morad" in capsys.readouterr().out
    with Session(ctx.engine) as s:
        assert s.exec(select(Dossier)).one().prevalidated
        assert s.exec(select(Deadline)).one().state == "met"
    assert main(["mark", "EPAY-2027-0009", "prevalidated", "--db", url]) == 2
