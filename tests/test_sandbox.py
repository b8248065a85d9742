"""The local sandbox against real servers on 127.0.0.1: Dovecot, LocalSmtp, the whole Sandbox."""

import asyncio
import email
import imaplib
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from email.message import EmailMessage

import aiosmtplib
import pytest
from imapclient import IMAPClient

from mailbot.errors import SandboxError
from mailbot.transport.sandbox import DovecotServer, LocalSmtp, PymapServer, Sandbox, dovecot_available, imap_append

pytestmark = pytest.mark.integration  # servers started by the tests themselves too

RAW = (b"From: Marie Dubois <marie.dubois@sambreville.be>\r\nTo: ecom-belgium@worldline.localhost\r\n"
       b"Subject: =?utf-8?q?Bon_de_commande_=E2=80=93_Sambreville?=\r\nMessage-ID: <t1@sambreville.be>\r\n"
       b"\r\nBonjour,\r\nci-joint le formulaire.\r\n")


def mail(to: str, cc: str | None = None, subject: str = "Formulaire") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ecom-belgium@worldline.localhost", to, subject
    if cc:
        msg["Cc"] = cc
    msg.set_content("Bonjour,\n")
    return msg


def send(smtp: LocalSmtp, msg: EmailMessage, **kwargs):
    return asyncio.run(aiosmtplib.send(msg, hostname=smtp.host, port=smtp.port, start_tls=False, **kwargs))


def inbox(client: IMAPClient) -> list[bytes]:
    client.select_folder("INBOX", readonly=True)
    uids = client.search()
    return [d[b"BODY[]"] for _, d in sorted(client.fetch(uids, ["BODY.PEEK[]"]).items())] if uids else []


def test_dovecot_answers_login(dovecot, imap_user, imap_connect):
    with socket.create_connection((dovecot.host, dovecot.port), timeout=2) as sock:
        assert sock.recv(512).startswith(b"* OK")
    client = imap_connect(*imap_user)
    assert {b"IDLE", b"UIDPLUS"} <= set(client.capabilities())
    with pytest.raises(imaplib.IMAP4.error):
        imap_connect(imap_user[0], "wrong-password")


def test_users_added_while_running_can_log_in_at_once(make_imap_user, imap_connect):
    # Right after another login: a shared passwd-file is checked at most once a second.
    imap_connect(*make_imap_user())
    for _ in range(3):
        assert imap_connect(*make_imap_user()).select_folder("INBOX")[b"EXISTS"] == 0


def test_append_then_fetch_round_trip(imap_user, append, imap_connect):
    uid = append(*imap_user, RAW)
    client = imap_connect(*imap_user)
    client.select_folder("INBOX")
    assert client.search() == [uid]
    data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
    assert data[b"BODY[]"] == RAW
    assert b"\\Seen" not in data[b"FLAGS"]


def test_idle_sees_an_append_from_another_connection(imap_user, append, imap_connect):
    watcher = imap_connect(*imap_user)
    watcher.select_folder("INBOX")
    watcher.idle()
    started = time.monotonic()
    append(*imap_user, RAW)
    seen = []
    while not any(r[1:2] == (b"EXISTS",) for r in seen) and time.monotonic() - started < 3:
        seen += watcher.idle_check(timeout=0.5)
    delay = time.monotonic() - started
    watcher.idle_done()
    assert (1, b"EXISTS") in seen
    assert delay < 2.0  # Dovecot waits ~0.5 s after a change before it notifies


def test_restart_keeps_port_and_mail_and_drops_sessions(dovecot, imap_user, append, imap_connect):
    uid = append(*imap_user, RAW)
    before = imap_connect(*imap_user)
    before.select_folder("INBOX")
    port, pid = dovecot.port, dovecot.pid
    dovecot.restart()
    assert (dovecot.port, dovecot.host) == (port, "127.0.0.1") and dovecot.pid not in (None, pid)
    with pytest.raises((imaplib.IMAP4.error, OSError)):
        before.noop()
    after = imap_connect(*imap_user)
    after.select_folder("INBOX")
    assert after.search() == [uid]


def test_custom_keyword_is_stored(imap_user, append, imap_connect):
    uid = append(*imap_user, RAW)
    client = imap_connect(*imap_user)
    assert b"\\*" in client.select_folder("INBOX")[b"PERMANENTFLAGS"]
    client.add_flags([uid], [b"$MailbotDone"])
    client.logout()
    again = imap_connect(*imap_user)
    again.select_folder("INBOX")
    assert b"$MailbotDone" in again.get_flags([uid])[uid]
    assert again.search(["KEYWORD", "$MailbotDone"]) == [uid]


def test_smtp_delivers_to_local_users_and_catches_the_rest(local_smtp, imap_user, imap_connect):
    local_smtp.add_mailbox("Ecom-Belgium@worldline.localhost", *imap_user)
    send(local_smtp, mail("ecom-belgium@worldline.localhost", cc="marie.dubois@sambreville.be"))
    [envelope] = local_smtp.envelopes
    assert envelope.accepted and envelope.rcpt_tos == ("ecom-belgium@worldline.localhost",
                                                       "marie.dubois@sambreville.be")
    [local] = inbox(imap_connect(*imap_user))
    assert local.startswith(b"Return-Path: <ecom-belgium@worldline.localhost>\r\n"
                            b"Delivered-To: ecom-belgium@worldline.localhost\r\n")
    [outside] = inbox(imap_connect(*local_smtp.outside))
    parsed = email.message_from_bytes(outside)
    assert parsed["X-Sandbox-Rcpt"] == "marie.dubois@sambreville.be"
    assert parsed["Delivered-To"] is None and parsed["Subject"] == "Formulaire"


@pytest.mark.parametrize("code", [451, 554])
def test_fault_switch_refuses_the_next_messages(local_smtp, imap_connect, code):
    local_smtp.fail_next(2, code)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            send(local_smtp, mail("marie.dubois@sambreville.be"))
        assert refused.value.code == code
    send(local_smtp, mail("marie.dubois@sambreville.be"))
    assert [e.reply[:3] for e in local_smtp.envelopes] == [str(code), str(code), "250"]
    assert len(inbox(imap_connect(*local_smtp.outside))) == 1  # refused ones were not delivered


def test_failed_delivery_answers_4xx(local_smtp):
    local_smtp.add_mailbox("epayment@bosa.localhost", "nobody-here", "wrong")
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        send(local_smtp, mail("epayment@bosa.localhost"))
    assert refused.value.code == 451


def test_smtp_auth_and_stop_start():
    # No mailboxes and no catch-all: messages are only recorded, no IMAP server is needed.
    smtp = LocalSmtp("127.0.0.1", 9, auth=("bot", "s3cret")).start()
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            send(smtp, mail("marie.dubois@sambreville.be"))
        assert refused.value.code == 530  # authentication required
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            send(smtp, mail("marie.dubois@sambreville.be"), username="bot", password="wrong")
        send(smtp, mail("marie.dubois@sambreville.be"), username="bot", password="s3cret")
        port = smtp.port
        smtp.stop()
        with pytest.raises(aiosmtplib.SMTPConnectError):
            send(smtp, mail("marie.dubois@sambreville.be"), username="bot", password="s3cret")
        smtp.start()
        assert smtp.port == port
        send(smtp, mail("marie.dubois@sambreville.be"), username="bot", password="s3cret")
        assert [e.accepted for e in smtp.envelopes] == [True, True]
    finally:
        smtp.stop()


@pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed (Debian package dovecot-imapd)")
def test_sandbox_creates_users_folders_and_keeps_them():
    parent = tempfile.mkdtemp(prefix="mailbot-sandbox-")
    os.chmod(parent, 0o711)  # as root, Dovecot runs as nobody, who must reach the folder
    addresses = {"ecom-belgium@worldline.localhost": "worldline", "epayment@bosa.localhost": "bosa",
                 "morad.staff@worldline.localhost": "morad.staff"}
    try:
        with Sandbox(f"{parent}/box", addresses) as box:
            credentials = f"{parent}/box/credentials.json"
            assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
            for user in ("worldline", "bosa"):
                with IMAPClient(box.imap_host, port=box.imap_port, ssl=False) as client:
                    client.login(*box.credentials(user))
                    assert client.folder_exists("Sent")
            msg = mail("epayment@bosa.localhost", cc="morad.staff@worldline.localhost")
            asyncio.run(aiosmtplib.send(msg, hostname=box.smtp_host, port=box.smtp_port, start_tls=False))
            for user in ("bosa", "morad.staff"):
                with IMAPClient(box.imap_host, port=box.imap_port, ssl=False) as client:
                    client.login(*box.credentials(user))
                    assert len(inbox(client)) == 1
            password = box.credentials("bosa")
            with pytest.raises(SandboxError):
                box.credentials("nobody-here")
        # Same folder again: same passwords, mail still there.
        with Sandbox(f"{parent}/box", addresses) as box:
            assert box.credentials("bosa") == password
            with IMAPClient(box.imap_host, port=box.imap_port, ssl=False) as client:
                client.login(*password)
                assert len(inbox(client)) == 1
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.skipif(not dovecot_available(), reason="Dovecot is not installed (Debian package dovecot-imapd)")
def test_sandbox_keeps_its_ports_from_one_start_to_the_next():
    """A mail program set up once keeps working; a port taken meanwhile is replaced, and said."""
    parent = tempfile.mkdtemp(prefix="mailbot-sandbox-")
    os.chmod(parent, 0o711)  # as root, Dovecot runs as nobody, who must reach the folder
    try:
        with Sandbox(f"{parent}/box") as box:
            first = (box.imap_port, box.smtp_port)
            assert box.notices == []
        with Sandbox(f"{parent}/box") as box:
            assert (box.imap_port, box.smtp_port) == first and box.notices == []
        taken = [socket.socket(), socket.socket()]
        for sock, port in zip(taken, first, strict=True):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the last run's TIME_WAIT
            sock.bind(("127.0.0.1", port))
            sock.listen()
        try:
            with Sandbox(f"{parent}/box") as box:
                moved = (box.imap_port, box.smtp_port)
                assert moved[0] != first[0] and moved[1] != first[1]
                imap_append(box.imap_host, box.imap_port, *box.credentials("bosa"), RAW)
                imap_line, smtp_line = box.notices
                assert f"IMAP port {first[0]}" in imap_line and f"now {moved[0]}" in imap_line
                assert f"SMTP port {first[1]}" in smtp_line and f"now {moved[1]}" in smtp_line
        finally:
            for sock in taken:
                sock.close()
        with Sandbox(f"{parent}/box") as box:  # the new ports are the ones kept now
            assert (box.imap_port, box.smtp_port) == moved and box.notices == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)


AS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or not dovecot_available(),
                             reason="as root with Dovecot: its processes run as nobody")


@AS_ROOT
def test_as_root_the_folders_made_for_the_sandbox_let_nobody_through():
    """`mailbot run` as root makes /var/lib/mailbot/sandbox: each folder it makes may be entered by
    Dovecot's nobody (search bit), not read (its mail and passwords stay root's)."""
    parent = tempfile.mkdtemp(prefix="mailbot-sandbox-")  # 0700, then as /var/lib is:
    os.chmod(parent, 0o755)
    try:
        with Sandbox(f"{parent}/mailbot/sandbox") as box:
            imap_append(box.imap_host, box.imap_port, *box.credentials("bosa"), RAW)
        for made in (f"{parent}/mailbot", f"{parent}/mailbot/sandbox"):
            assert stat.S_IMODE(os.stat(made).st_mode) == 0o711, made
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@AS_ROOT
def test_as_root_a_closed_folder_above_the_sandbox_is_said_not_changed():
    """Root's home (0700) is not the sandbox's to open: the start stops, saying what to do."""
    home = tempfile.mkdtemp(prefix="mailbot-home-")  # 0700, as /root
    try:
        with pytest.raises(SandboxError) as refused:
            Sandbox(f"{home}/.local/state/mailbot/sandbox").start()
        assert str(refused.value) == (f"as root the sandbox's Dovecot runs as nobody, who cannot enter {home} "
                                      "(mode 700): keep the sandbox in a folder outside it (--sandbox DIR, "
                                      "or XDG_STATE_HOME)")
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_start_failure_says_why(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    with busy, pytest.raises(SandboxError, match="is in use"):
        DovecotServer(tmp_path / "a", port=busy.getsockname()[1]).start(timeout=0.2)
    # A "Dovecot" that exits at once (Python refusing -F): the error quotes the end of the log.
    server = DovecotServer(tmp_path / "b", binary=sys.executable)
    with pytest.raises(SandboxError, match="exited with status") as failed:
        server.start()
    assert server.log_path.read_text().strip().splitlines()[-1] in str(failed.value)


def test_pymap_fallback_has_the_same_interface(tmp_path):
    pytest.importorskip("pymap", reason="pymap is not installed (the fallback when Dovecot is missing)")
    with PymapServer(tmp_path) as server:
        server.add_user("alice", "pw-1")
        uid = imap_append(server.host, server.port, "alice", "pw-1", RAW)
        server.add_user("bob", "pw-2")  # while running
        with IMAPClient(server.host, port=server.port, ssl=False) as client:
            client.login("bob", "pw-2")
        port = server.port
        server.restart()
        assert server.port == port
        with IMAPClient(server.host, port=server.port, ssl=False) as client:
            client.login("alice", "pw-1")
            # pymap keeps messages with bare LF line ends (Dovecot returns what was sent).
            assert inbox(client) == [RAW.replace(b"\r\n", b"\n")] and uid == 1
