"""The transport's narrow errors (mailbot/errors.py): what the libraries and sockets raise is
translated by mailbot/transport into errors that name the host and the step; the watcher waits
out only those (and the database), so a bug in the pipeline is not taken for a lost connection.
Against real servers on 127.0.0.1: the session Dovecot and a LocalSmtp."""

import asyncio
import datetime as dt
import socket

import aiosmtplib
import pytest
from sqlmodel import Session, select

from mailbot.answers.render import Rendered
from mailbot.config import Daemon, Imap, Smtp
from mailbot.errors import (
    ConnectionLost,
    ImapCommandFailed,
    ImapConnectionLost,
    ImapLoginFailed,
    SmtpConnectionLost,
    SmtpLoginFailed,
    SmtpPermanent,
    SmtpTemporary,
)
from mailbot.outbox import Draft, Limits, enqueue
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.folders import FolderStateStore
from mailbot.store.models import FolderState, OutboxMail
from mailbot.transport.imap import FolderWatcher, ImapFolder, ImapSentFolder, call
from mailbot.transport.sandbox import LocalSmtp, free_port
from mailbot.transport.sent import Filing
from mailbot.transport.smtp import OutboxSender, smtp_error

RAW = b"From: a@sambreville.be\r\nTo: ecom-belgium@worldline.localhost\r\nSubject: x\r\n\r\nbody\r\n"


def imap(host="127.0.0.1", port=143, user="bot", security="plain") -> Imap:
    return Imap(host=host, port=port, user=user, security=security)


# --- IMAP --------------------------------------------------------------------------------------

def test_a_name_that_does_not_resolve():
    conn = ImapFolder(imap("imap.example.invalid", security="tls"), "pw", "INBOX", timeout=5)
    with pytest.raises(ImapConnectionLost, match=r"^cannot resolve imap\.example\.invalid") as raised:
        call(conn, conn.connect)
    assert isinstance(raised.value, ConnectionLost) and isinstance(raised.value.__cause__, socket.gaierror)


def test_a_port_nobody_listens_on():
    port = free_port()
    conn = ImapFolder(imap(port=port), "pw", "INBOX", timeout=5)
    with pytest.raises(ImapConnectionLost, match=f"^cannot connect to 127.0.0.1: port {port}: .*Connection refused"):
        call(conn, conn.connect)


def test_a_refused_login_and_a_refused_command(dovecot, imap_user):
    user, password = imap_user
    conn = ImapFolder(imap(port=dovecot.port, user=user), "wrong", "INBOX", timeout=5)
    with pytest.raises(ImapLoginFailed, match=f"^login refused by {dovecot.host}: "):
        call(conn, conn.connect)
    conn = ImapFolder(imap(port=dovecot.port, user=user), password, "INBOX", timeout=5)
    try:
        call(conn, conn.connect)
        conn.folder = "No/Such/Folder"  # the APPEND is refused (NO), the connection stays
        with pytest.raises(ImapCommandFailed, match=f"^{dovecot.host} refused append: "):
            call(conn, conn.append, RAW)
        assert call(conn, conn.has_message_id, "x@worldline.localhost") is False
    finally:
        conn.close()


def test_the_sent_folder_says_unknown_when_it_cannot_look_and_raises_when_it_cannot_add():
    folder = ImapSentFolder(imap(port=free_port()), "pw", "Sent", Filing.BOT, timeout=5)

    async def run():
        assert await folder.find("x@worldline.localhost") is None
        with pytest.raises(ImapConnectionLost, match=r"(?i)connection refused"):
            await folder.add("x@worldline.localhost", RAW)
        await folder.close()

    asyncio.run(run())


class Watched:
    """A FolderWatcher on the session Dovecot with its own store, `process` given."""

    def __init__(self, tmp_path, cfg: Imap, password: str, process) -> None:
        self.engine = open_database(f"sqlite:///{tmp_path}/watch.sqlite")
        self.stop = asyncio.Event()

        async def run_db(fn, *args):
            return await asyncio.to_thread(fn, *args)

        store = FolderStateStore(self.engine, run_db, lambda: dt.datetime.now(dt.UTC), [("worldline", "INBOX")])
        self.watcher = FolderWatcher("worldline", "INBOX", cfg, password, process, store,
                                     Daemon(backoff_max_seconds=0.5, imap_timeout_seconds=5), self.stop)

    def state(self) -> FolderState | None:
        with Session(self.engine) as session:
            return session.exec(select(FolderState)).first()


def test_a_bug_in_the_pipeline_ends_the_watcher_instead_of_passing_for_a_lost_connection(
        dovecot, imap_user, append, tmp_path):
    user, password = imap_user
    append(user, password, RAW)
    calls = []

    async def process(items: list[tuple[bytes, Seen]]) -> int:
        calls.append(len(items))
        raise ValueError("a bug in the pipeline")  # ValueError once counted as an IMAP connection error

    watched = Watched(tmp_path, imap(port=dovecot.port, user=user), password, process)
    with pytest.raises(ValueError, match="a bug in the pipeline"):
        asyncio.run(asyncio.wait_for(watched.watcher.run(), timeout=30))
    assert calls == [1]  # not retried as after a lost connection
    assert watched.state().last_error == ""  # nor recorded as one


def test_a_lost_connection_is_waited_out_and_recorded_with_its_host(tmp_path):
    port = free_port()

    async def process(items):
        raise AssertionError("no mail without a server")

    watched = Watched(tmp_path, imap(port=port), "pw", process)

    async def run():
        task = asyncio.create_task(watched.watcher.run())
        for _ in range(100):
            await asyncio.sleep(0.1)
            row = await asyncio.to_thread(watched.state)
            if row is not None and row.last_error:
                break
        watched.stop.set()
        await asyncio.wait_for(task, timeout=10)  # still running until stopped: it retries
        return row

    row = asyncio.run(run())
    assert row.last_error.startswith(f"ConnectionStepFailed: cannot connect to 127.0.0.1: port {port}: ")


# --- SMTP --------------------------------------------------------------------------------------

SMTP = Smtp(host="127.0.0.1", port=25, security="plain")


@pytest.mark.parametrize("raised, kind, message", [
    (aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b.be"), SmtpPermanent,
     "550 no such user (127.0.0.1, RCPT TO)"),
    (aiosmtplib.SMTPDataError(451, "try later"), SmtpTemporary, "451 try later (127.0.0.1, DATA)"),
    # a refused login is the credentials' fault, not the mail's: not permanent, the mail waits
    (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), SmtpLoginFailed,
     "login refused by 127.0.0.1: 535 bad credentials"),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), SmtpConnectionLost,
     "connection to 127.0.0.1 lost (sending): SMTPServerDisconnected: Connection lost"),
    (aiosmtplib.SMTPReadTimeoutError("Timed out"), SmtpConnectionLost, "no answer from 127.0.0.1 (sending)"),
    (aiosmtplib.SMTPRecipientsRefused([]), SmtpTemporary, "127.0.0.1 refused RCPT TO: SMTPRecipientsRefused: []"),
])
def test_smtp_errors_are_narrowed_and_name_the_host_and_step(raised, kind, message):
    error = smtp_error(raised, SMTP, "sending")
    assert type(error) is kind and str(error) == message
    assert error.code == getattr(raised, "code", None)


def test_smtp_connect_errors_name_the_cause():
    cause = socket.gaierror(-2, "Name or service not known")
    raised = aiosmtplib.SMTPConnectError("Error connecting to smtp.example.invalid on port 587")
    raised.__cause__ = cause
    cfg = Smtp(host="smtp.example.invalid", security="starttls")
    assert str(smtp_error(raised, cfg, "connect")) == "cannot resolve smtp.example.invalid: Name or service not known"


@pytest.fixture
def smtp_with_auth():
    smtp = LocalSmtp("127.0.0.1", 9, auth=("bot", "s3cret")).start()  # records only; no IMAP needed
    yield smtp
    smtp.stop()


def sender_for(tmp_path, cfg: Smtp, password: str | None):
    engine = open_database(f"sqlite:///{tmp_path}/send.sqlite")
    with Session(engine) as session:
        enqueue(session, Draft("form_missing", "ecom-belgium@worldline.localhost", ("client1@sambreville.be",), (),
                               Rendered("Objet", "texte", "", "fr"), "Projet 1"),
                dt.datetime.now(dt.UTC), Limits())
        session.commit()

    async def run_db(fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    sender = OutboxSender(engine, run_db, cfg, password, Daemon(send_retry_max_seconds=1),
                          lambda: dt.datetime.now(dt.UTC), asyncio.Event())
    return engine, sender


@pytest.mark.integration
@pytest.mark.parametrize("password, state, error", [
    # a refused login fails no mail: it waits in the outbox for the credentials to be mended
    ("wrong", "pending", "login refused by 127.0.0.1: 535 5.7.8 Authentication credentials invalid"),
    ("s3cret", "sent", ""),
])
def test_the_sender_records_what_the_server_said(tmp_path, smtp_with_auth, password, state, error):
    cfg = Smtp(host="127.0.0.1", port=smtp_with_auth.port, user="bot", security="plain")
    engine, sender = sender_for(tmp_path, cfg, password)

    async def run():
        from mailbot.outbox import claim
        row = await sender.run_db(claim, engine, sender.clock())
        await sender.send(row)
        await sender._close()

    asyncio.run(run())
    with Session(engine) as session:
        row = session.exec(select(OutboxMail)).one()
    assert (row.state, row.last_error) == (state, error)
    assert len(smtp_with_auth.envelopes) == (state == "sent")


def test_the_sender_records_a_refused_connection_and_tries_again_later(tmp_path):
    port = free_port()
    engine, sender = sender_for(tmp_path, Smtp(host="127.0.0.1", port=port, security="plain"), None)

    async def run():
        from mailbot.outbox import claim
        await sender.send(await sender.run_db(claim, engine, sender.clock()))

    asyncio.run(run())
    with Session(engine) as session:
        row = session.exec(select(OutboxMail)).one()
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, f"connection refused by 127.0.0.1:{port}")
