"""A bot's whole mail world for integration tests: two fresh mailboxes in the session Dovecot,
a LocalSmtp delivering into it, settings pointing at both, and the daemon run in a thread.

Shared by tests/test_daemon.py, tests/test_faults.py and tests/test_outbox.py (import it as `mailworld`: pytest puts
tests/ on sys.path, there being no tests/__init__.py).
"""

import asyncio
import datetime as dt
import email
import email.policy
import email.utils
import json
import logging
import shutil
import smtplib
import threading
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlmodel import Session, col, func, select

from mailbot.config import parse_settings
from mailbot.daemon import Daemon
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.season import XLSX, Mail, brussels
from mailbot.store.models import FolderState, Message, OutboxMail
from mailbot.transport.sandbox import LocalSmtp
from mailbot.transport.stamp import AUTHSERV_ID, stamp

FORM_RULES = load_rules()

WL = "ecom-belgium@worldline.localhost"
BOSA = "epayment@bosa.localhost"
CLIENT = "marie.dubois@sambreville.be"
FROM_HEADER = object()  # World.append's default envelope sender: the mail's From address


def wait_for(predicate, timeout=15.0, what="condition", interval=0.05):
    """predicate()'s first true value, looked at every `interval` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def form_mail(n, project="E-guichet", sender=CLIENT, **changes):
    form = fill_form("fr", complete_values("fr", project_name=project, **changes), rules=FORM_RULES)
    return Mail(brussels(2027, 3, 1, 9), sender, [WL], f"BOSA M1036 - Bon de commande – {project}", "ci-joint",
                cc=[BOSA], attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<form{n}@sambreville.be>")


class World:
    """Two fresh mailboxes in the session Dovecot, a LocalSmtp, and settings pointing at them."""

    def __init__(self, dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch, name="bot", wl=WL, bosa=BOSA):
        """`name` and the two addresses tell several worlds apart (they may share a LocalSmtp)."""
        self.dovecot, self.smtp, self.tmp = dovecot, local_smtp, tmp_path
        self.addresses = {"worldline": wl, "bosa": bosa}
        self.users = {"worldline": make_imap_user(), "bosa": make_imap_user()}
        prefix = "TEST_" if name == "bot" else f"TEST_{name.upper()}_"
        for box, (user, password) in self.users.items():
            monkeypatch.setenv(f"{prefix}{box.upper()}_PW", password)
            local_smtp.add_mailbox(self.addresses[box], user, password)
        self.data = {
            # Like the sandbox's configuration: the LocalSmtp's Authentication-Results are believed.
            "mailboxes": {box: {"address": addr, "imap": {"host": dovecot.host, "port": dovecot.port,
                                                         "user": self.users[box][0], "security": "plain",
                                                         "password_env": f"{prefix}{box.upper()}_PW"},
                                "authentication": {"authserv_ids": [AUTHSERV_ID]}}
                          for box, addr in self.addresses.items()},
            "smtp": {"host": local_smtp.host, "port": local_smtp.port, "security": "plain"},
            "database": {"url": f"sqlite:///{tmp_path}/{name}.sqlite"},
            # As if the bot had first started long ago: mail appended before start() is new mail,
            # not history (tests/test_history.py takes this away).
            "daemon": {"send_retry_max_seconds": 1, "backoff_max_seconds": 2,
                       "history_before": "2000-01-01T00:00:00+00:00"},
        }
        self.settings = parse_settings(self.data)
        self.bot = None
        self._engine = None

    def configure(self, **sections):
        """Change settings before start(): configure(daemon={"idle_minutes": 0.05}); nested
        tables merge: configure(mailboxes={"worldline": {"imap": {"inbox": "Incoming"}}})."""
        def merge(into, values):
            for key, value in values.items():
                if isinstance(value, dict):
                    merge(into.setdefault(key, {}), value)
                else:
                    into[key] = value
        merge(self.data, sections)
        self.settings = parse_settings(self.data)

    def append(self, name, raw, folder="INBOX", flags=(), mail_from=FROM_HEADER):
        """Put a mail straight into a folder. Into any folder but Sent it arrives as the sandbox's
        SMTP server delivers it, stamped with its Authentication-Results for the envelope sender
        `mail_from` (by default the From address: the sender's own server sent it; None: not
        stamped, as a mail program's IMAP APPEND). Sent holds what staff wrote: never stamped."""
        from mailbot.transport.sandbox import imap_append

        if mail_from is not None and folder != "Sent":
            raw = stamp(raw, _from_address(raw) if mail_from is FROM_HEADER else mail_from)
        return imap_append(self.dovecot.host, self.dovecot.port, *self.users[name], raw, folder, flags)

    def append_all(self, name, raws, folder="INBOX"):
        """Many mails over one connection, in order (a login for each costs more than the mail),
        stamped as `append` stamps them (the sender's own server sent each)."""
        with IMAPClient(self.dovecot.host, port=self.dovecot.port, ssl=False, timeout=10) as client:
            client.login(*self.users[name])
            for raw in raws:
                client.append(folder, raw if folder == "Sent" else stamp(raw, _from_address(raw)))

    def send(self, raw, mail_from=None, to=None):
        """Send a mail through the LocalSmtp, which stamps it and delivers it into the world's
        inboxes it is addressed to; `mail_from`: the envelope sender (by default the From address),
        `to`: the recipients (by default To and Cc)."""
        parsed = email.message_from_bytes(raw)
        if mail_from is None:
            mail_from = email.utils.parseaddr(parsed.get("From", ""))[1]
        if to is None:
            to = [a for _, a in email.utils.getaddresses(parsed.get_all("To", []) + parsed.get_all("Cc", [])) if a]
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=10) as client:
            client.sendmail(mail_from, to, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    def start(self):
        since = dt.datetime.now(dt.UTC)
        self.bot = Daemon(self.settings, with_scheduler=False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(self.bot.serve()), daemon=True)
        self.thread.start()
        wait_for(lambda: self.count(FolderState) >= 4 and self.connected(since), what="the watchers to connect")

    def stop(self):
        if self.bot is not None:
            self.loop.call_soon_threadsafe(self.bot.stop.set)
            self.thread.join(20)
            assert not self.thread.is_alive()
            self.bot = None

    def session(self):
        from mailbot.store.db import open_database

        if self._engine is None:  # one engine: opening one runs the migrations
            self._engine = open_database(self.settings.database.url)
        return Session(self._engine)

    def count(self, model, *where):
        with self.session() as s:
            return s.exec(select(func.count()).select_from(model).where(*where)).one()

    def connected(self, since=None):
        """Every watcher has caught up (since `since`, when given)."""
        with self.session() as s:
            return all(f.last_contact and (since is None or f.last_contact >= since)
                       for f in s.exec(select(FolderState)))

    def caught_up(self):
        """Every folder the bot watches has no mail on the server beyond the last UID it took."""
        with self.session() as s:
            folders = s.exec(select(FolderState)).all()
        for box in {f.mailbox for f in folders}:
            with IMAPClient(self.dovecot.host, port=self.dovecot.port, ssl=False, timeout=10) as client:
                client.login(*self.users[box])
                for f in (f for f in folders if f.mailbox == box):
                    if client.select_folder(f.folder, readonly=True)[b"UIDVALIDITY"] != f.uidvalidity:
                        return False
                    if any(uid > f.last_uid for uid in client.search(["UID", f"{f.last_uid + 1}:*"])):
                        return False
        return True

    def settled(self, also=lambda: True):
        """Nothing left that could make the bot act: every mail on the server taken and
        processed (or set aside), the outbox sent or refused for good, every Sent copy added,
        and `also()` (what the test's own hooks still owe). The bot adds mail to the server
        only by a send or a copy that the outbox shows, and hooks act on a message the SMTP
        server received: so the server is looked at last, and a message received meanwhile
        means looking again."""
        received = len(self.smtp.envelopes)
        return (also()
                and self.count(Message, Message.status == "received") == 0
                and self.count(OutboxMail, col(OutboxMail.state).in_(["pending", "sending", "handed"])) == 0
                and self.count(OutboxMail, OutboxMail.copy_owed == True) == 0  # noqa: E712
                and self.caught_up()
                and len(self.smtp.envelopes) == received)

    def wait_settled(self, timeout=30.0, also=lambda: True):
        """Wait until the bot has nothing left to do: an answer sent twice would have come."""
        wait_for(lambda: self.settled(also), timeout, "the bot to have nothing left to do", interval=0.1)

    def answers(self, to=CLIENT):
        """What the SMTP server received for `to` (an address, or the end of one)."""
        return [e for e in self.smtp.envelopes if any(r.endswith(to) for r in e.rcpt_tos)]


def to_toml(data, prefix=""):
    """Enough TOML for the test configuration: nested tables of strings and numbers."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in scalars.items()]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines) + "\n"


def purpose(envelope):
    return email.message_from_bytes(envelope.data)["X-Mailbot-Purpose"]


# --- fixtures for the tests that run a whole bot (import them into the test module) ----------

@pytest.fixture
def local_smtp(dovecot):
    """LocalSmtp delivering to the bots' mailboxes; mail to clients is only counted (envelopes)."""
    smtp = LocalSmtp(dovecot.host, dovecot.port).start()
    yield smtp
    smtp.stop()


@pytest.fixture(autouse=True)
def bot_log(caplog):
    """The in-process daemon's log, shown with a failure."""
    caplog.set_level(logging.INFO, logger="mailbot")


def copy_migrated_database(template, url):
    """A daemon run in a subprocess migrates its own database (conftest's template fixture does
    not reach it): its file copied from the migrated template instead, unless there is one."""
    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch, migrated_database):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    copy_migrated_database(migrated_database, w.settings.database.url)
    yield w
    w.stop()


def _from_address(raw: bytes) -> str:
    """The From address of a raw mail (a UTF-8 one too, RFC 6532)."""
    return email.utils.parseaddr(str(email.message_from_bytes(raw, policy=email.policy.default).get("From", "")))[1]
