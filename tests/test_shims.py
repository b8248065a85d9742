"""Contract tests of mailbot/shims: the libraries' internals that mailbot uses, checked against
the installed releases on real servers on 127.0.0.1 (aiosmtpd, the session Dovecot). A release
that changes them fails here; pyproject.toml bounds these libraries to the major version that
passed."""

import asyncio
import contextlib
import time
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from mailbot.shims import imapclient_imaplib
from mailbot.shims.aiosmtplib_data import HandingSMTP
from mailbot.transport.sandbox import free_port

# --- aiosmtplib: DATA with a pause before the final dot ---------------------------------------


class Recorder:
    """aiosmtpd handler: what it received, when (each DATA's content, as the server got it)."""

    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.contents.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def smtp_server():
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, recorder
    controller.stop()


def tricky_mail() -> EmailMessage:
    """Lines that start with a dot (doubled on the wire), and a bare LF in the body."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ecom-belgium@worldline.localhost", "a@sambreville.be", "x"
    msg["Message-ID"] = "<shim@worldline.localhost>"
    msg.set_content(".\n..leading dots\nline\n.\nend")
    return msg


@contextlib.asynccontextmanager
async def quiet():
    yield


def test_handing_smtp_leaves_the_final_dot_to_the_hand_over_and_sends_what_aiosmtplib_sends(smtp_server):
    controller, recorder = smtp_server
    calls = []

    async def run():
        stock = aiosmtplib.SMTP(hostname=controller.hostname, port=controller.port, start_tls=False)
        await stock.connect()
        await stock.send_message(tricky_mail())
        await stock.quit()

        def hand_over(write_dot):
            time.sleep(0.3)  # the whole message is on the wire by now: the server must still wait
            calls.append(len(recorder.contents))  # what the server had taken before the dot
            write_dot()

        handing = HandingSMTP(quiet, hand_over, hostname=controller.hostname, port=controller.port, start_tls=False)
        await handing.connect()
        errors, answer = await handing.send_message(tricky_mail())  # aiosmtplib's own send_message
        await handing.quit()
        return errors, answer

    errors, answer = asyncio.run(run())
    assert errors == {} and answer.startswith("OK")
    assert calls == [1]  # called once, and the server had only the stock mail until the dot
    assert len(recorder.contents) == 2
    assert recorder.contents[1] == recorder.contents[0]  # the same bytes as aiosmtplib's own DATA
    assert b"\r\n..leading dots\r\n" in recorder.contents[1]


def test_handing_smtp_closes_the_connection_when_the_hand_over_fails(smtp_server):
    """Without its dot the server drops the message: the connection must not be used again."""
    controller, recorder = smtp_server

    def hand_over(write_dot):
        raise RuntimeError("the database refused the commit")

    async def run():
        handing = HandingSMTP(quiet, hand_over, hostname=controller.hostname, port=controller.port, start_tls=False)
        await handing.connect()
        with pytest.raises(RuntimeError):
            await handing.send_message(tricky_mail())
        return handing.is_connected

    assert asyncio.run(run()) is False
    time.sleep(0.2)
    assert recorder.contents == []


# --- imapclient: what imaplib holds that IMAPClient does not tell ---------------------------------

RAW = b"From: a@sambreville.be\r\nTo: ecom-belgium@worldline.localhost\r\nSubject: x\r\n\r\nbody\r\n"


def test_announced_sees_an_exists_left_by_another_command_once(imap_user, imap_connect, append):
    client = imap_connect(*imap_user)
    client.select_folder("INBOX")
    imapclient_imaplib.announced(client)  # SELECT's own EXISTS, consumed
    assert imapclient_imaplib.announced(client) is False
    append(*imap_user, RAW)  # another session
    client.search(["ALL"])  # Dovecot tells of the new mail in its answer; imapclient keeps silent
    assert imapclient_imaplib.announced(client) is True
    assert imapclient_imaplib.announced(client) is False  # consumed


def test_buffered_sees_lines_waiting_during_idle(imap_user, imap_connect, append):
    client = imap_connect(*imap_user)
    client.select_folder("INBOX")
    client.idle()
    assert imapclient_imaplib.buffered(client) is False
    timeout = client.socket().gettimeout()
    append(*imap_user, RAW)  # another session
    deadline = time.monotonic() + 5  # Dovecot tells an IDLE session after ~0.5 s
    while not imapclient_imaplib.buffered(client) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert imapclient_imaplib.buffered(client) is True
    assert client.socket().gettimeout() == timeout  # the socket left as it was
    # The line is in imaplib's buffer now, where idle_check() never looks -- the reason for
    # buffered() -- and it is what the server said about the new mail.
    assert client.idle_check(timeout=0.5) == []
    _, responses = client.idle_done()
    assert (1, b"EXISTS") in responses
