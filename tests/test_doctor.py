"""`mailbot doctor` against the session's Dovecot, aiosmtpd and pymap on 127.0.0.1: a good
configuration passes every step; each deliberately broken step is one ✗ line, exit 1."""

import select
import shutil
import socket
import sqlite3
import ssl
import subprocess
import threading

import pytest
from alembic.script import ScriptDirectory
from mailworld import to_toml

from mailbot import doctor
from mailbot.cli import main
from mailbot.config import Imap, Smtp
from mailbot.doctor import Check, DatabaseProbe, Status, Step, keyword_verdict, lines, run_steps
from mailbot.errors import ConnectionStepFailed, ImapError, ImapLoginFailed
from mailbot.resources import RULES
from mailbot.store.db import alembic_config, open_database
from mailbot.transport.imap import ImapFolder
from mailbot.transport.sandbox import LocalSmtp, PymapServer, free_port

WL = "ecom-belgium@worldline.localhost"
BOSA = "epayment@bosa.localhost"
ADMIN = "it-support@sambreville.be"  # the --send-test address: LocalSmtp only records it


@pytest.fixture
def smtp_auth(dovecot):
    """aiosmtpd that wants AUTH (user "mailbot", password "smtp-secret"); mail is only recorded."""
    smtp = LocalSmtp(dovecot.host, dovecot.port, auth=("mailbot", "smtp-secret")).start()
    yield smtp
    smtp.stop()


def mailbox(dovecot, user, env, **imap):
    return {"host": dovecot.host, "port": dovecot.port, "user": user, "security": "plain", "password_env": env,
            **imap}


def new_user(make_imap_user, imap_connect, sent=True):
    user, password = make_imap_user()
    if sent:
        imap_connect(user, password).create_folder("Sent")
    return user, password


def good_config(dovecot, make_imap_user, imap_connect, smtp, tmp_path, monkeypatch):
    boxes = {}
    for name, address in (("worldline", WL), ("bosa", BOSA)):
        user, password = new_user(make_imap_user, imap_connect)
        monkeypatch.setenv(f"DOCTOR_{name.upper()}_PW", password)
        boxes[name] = {"address": address, "imap": mailbox(dovecot, user, f"DOCTOR_{name.upper()}_PW")}
    monkeypatch.setenv("DOCTOR_SMTP_PW", "smtp-secret")
    url = f"sqlite:///{tmp_path}/bot.sqlite"
    open_database(url).dispose()  # migrated to the newest migration
    return {"mailboxes": boxes,
            "smtp": {"host": smtp.host, "port": smtp.port, "security": "plain", "user": "mailbot",
                     "password_env": "DOCTOR_SMTP_PW"},
            "database": {"url": url}}


def run_doctor(data, tmp_path, capsys, *extra):
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data))
    code = main(["doctor", "--config", str(path), "--timeout", "5", *extra])
    return code, capsys.readouterr().out.splitlines()


def test_good_configuration_passes_every_step_and_sends_only_when_asked(
        dovecot, make_imap_user, imap_connect, smtp_auth, tmp_path, monkeypatch, capsys):
    data = good_config(dovecot, make_imap_user, imap_connect, smtp_auth, tmp_path, monkeypatch)
    code, out = run_doctor(data, tmp_path, capsys)
    assert code == 0, "\n".join(out)
    body, summary = out[:-1], out[-1]
    assert all(line.startswith("✓ ") for line in body), "\n".join(out)
    for scope in ("worldline imap", "bosa imap"):
        for words in (f"resolve {dovecot.host}", f"connect to {dovecot.host} port {dovecot.port}",
                      "plain text to", "logged in to", "folder 'INBOX' found", "folder 'Sent' found",
                      "custom keyword $MailbotDone allowed in 'INBOX' and 'Sent'", "IDLE offered"):
            assert any(line.startswith(f"✓ {scope}: {words}") for line in body), (scope, words, out)
    assert f"✓ smtp: logged in to {smtp_auth.host} as mailbot (nothing sent)" in body
    assert any(line.startswith("✓ database: schema at the newest migration") for line in body)
    assert any(line.startswith("✓ templates: ") for line in body)
    assert "ready to go live" in summary and "0 ✗" in summary
    assert smtp_auth.envelopes == []  # nothing sent without --send-test

    code, out = run_doctor(data, tmp_path, capsys, "--send-test", ADMIN)
    assert code == 0, "\n".join(out)
    assert any(line.startswith(f"✓ smtp: test mail sent from {WL} to {ADMIN}") for line in out)
    [envelope] = smtp_auth.envelopes
    assert envelope.rcpt_tos == (ADMIN,) and envelope.mail_from == WL
    assert b"Auto-Submitted: auto-generated" in envelope.data


def test_each_broken_step_is_one_line(dovecot, make_imap_user, imap_connect, smtp_auth, tmp_path, monkeypatch,
                                      capsys):
    data = good_config(dovecot, make_imap_user, imap_connect, smtp_auth, tmp_path, monkeypatch)
    boxes = data["mailboxes"]
    boxes["worldline"]["imap"]["password_env"] = "DOCTOR_WRONG_PW"
    monkeypatch.setenv("DOCTOR_WRONG_PW", "not-the-password")
    boxes["bosa"]["imap"].update(host="imap.bosa.invalid", security="tls")  # RFC 6761: never resolves
    closed = free_port()
    more = {"closed": mailbox(dovecot, "x", "DOCTOR_WORLDLINE_PW", port=closed),
            "tlsplain": mailbox(dovecot, "x", "DOCTOR_WORLDLINE_PW", host="127.0.0.1", security="tls"),
            "starttls": mailbox(dovecot, "x", "DOCTOR_WORLDLINE_PW", host="127.0.0.1", security="starttls")}
    user, password = new_user(make_imap_user, imap_connect, sent=False)
    monkeypatch.setenv("DOCTOR_NOSENT_PW", password)
    more["nosent"] = mailbox(dovecot, user, "DOCTOR_NOSENT_PW")
    for name, imap in more.items():
        boxes[name] = {"address": f"{name}@worldline.localhost", "imap": imap}
    monkeypatch.setenv("DOCTOR_SMTP_PW", "wrong-secret")
    # The database was written by a migration this mailbot does not have.
    with sqlite3.connect(tmp_path / "bot.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    # A rules file with an error, and staff's copy of a template that does not compile.
    (tmp_path / "subjects.toml").write_text((RULES / "subjects.toml").read_text() + "\n[broken\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "reminder.nl.html").write_text("<p>{% if dossier %}niet gesloten</p>\n")
    data["files"] = {"subject_rules": str(tmp_path / "subjects.toml"), "templates": str(templates)}

    code, out = run_doctor(data, tmp_path, capsys)
    text = "\n".join(out)
    assert code == 1, text
    failed = [line for line in out if line.startswith("✗ ")]
    expected = [
        "✗ worldline imap: login refused by 127.0.0.1: [AUTHENTICATIONFAILED]",
        "✗ bosa imap: cannot resolve imap.bosa.invalid",
        f"✗ closed imap: cannot connect to 127.0.0.1 port {closed}",
        "✗ tlsplain imap: TLS with 127.0.0.1 failed",
        "✗ starttls imap: TLS with 127.0.0.1 failed: STARTTLS",
        "✗ nosent imap: no folder 'Sent' on 127.0.0.1",
        f"✗ smtp: login refused by {smtp_auth.host}: 535",
        "✗ database: the database is at migration f00dfeedbeef, which this mailbot does not have",
        "✗ rules: subject rules: ",
        "✗ templates: templates in ",
    ]
    for start in expected:
        assert sum(line.startswith(start) for line in failed) == 1, (start, text)
    assert len(failed) == len(expected), text
    assert all(" — " in line for line in failed), text  # each says what to do
    assert "check user" in failed[0] and "password_env DOCTOR_WRONG_PW" in failed[0]
    assert "reminder.nl.html line" in text
    assert "starttls imap" in text and "offers no STARTTLS" in text
    # Steps behind a failure are skipped, in one line, not a cascade of ✗.
    assert "- bosa imap: tcp, tls, login, inbox, sent, keyword, idle skipped (resolve failed)" in out
    assert "- worldline imap: inbox, sent, keyword, idle skipped (login failed)" in out
    assert "✓ nosent imap: custom keyword $MailbotDone allowed in 'INBOX'" in text
    assert smtp_auth.envelopes == []


@pytest.mark.parametrize("security, words", [("tls", "WRONG_VERSION_NUMBER"), ("starttls", "offers no STARTTLS")])
def test_smtp_tls_to_a_plain_server(dovecot, security, words):
    with LocalSmtp(dovecot.host, dovecot.port) as smtp:
        cfg = Smtp(host=smtp.host, port=smtp.port, security=security, user="mailbot", password_env="X")
        checks = list(run_steps("smtp", doctor.SmtpProbe(cfg, WL, timeout=5).steps()))
    tls = checks[2]
    assert tls.status is Status.FAIL and tls.detail.startswith("TLS with 127.0.0.1 failed"), tls.line()
    assert words in tls.line()
    assert checks[3].status is Status.SKIPPED and checks[3].blocked_by == "tls"


@pytest.mark.integration
def test_keywords_refused_by_a_real_server_need_move_to(tmp_path, monkeypatch, capsys):
    """pymap lists no \\* in PERMANENTFLAGS: the keyword step fails until move_to is set."""
    pytest.importorskip("pymap")
    with PymapServer(tmp_path / "pymap") as server:
        server.add_user("bot", "pymap-secret")
        monkeypatch.setenv("DOCTOR_PYMAP_PW", "pymap-secret")
        imap = Imap(host=server.host, port=server.port, user="bot", security="plain", password_env="DOCTOR_PYMAP_PW")
        probe = doctor.ImapProbe("bosa", imap, timeout=5, poll_seconds=60)
        try:
            checks = {c.label: c for c in run_steps("bosa imap", probe.steps())}
        finally:
            probe.close()
        assert checks["login"].ok and checks["inbox"].ok, [c.line() for c in checks.values()]
        keyword = checks["keyword"]
        assert keyword.status is Status.FAIL, keyword.line()
        assert "keeps no custom keyword in 'INBOX' (PERMANENTFLAGS: " in keyword.detail and "\\*" not in keyword.detail
        assert 'set move_to = "Processed" in [mailboxes.bosa.imap]' in keyword.todo

        probe = doctor.ImapProbe("bosa", imap.model_copy(update={"move_to": "Processed"}), 5, 60)
        try:
            checks = {c.label: c for c in run_steps("bosa imap", probe.steps())}
        finally:
            probe.close()
        keyword = checks["keyword"]  # pymap offers MOVE
        assert keyword.status is Status.OK and "processed mail is moved to 'Processed'" in keyword.detail, keyword.line()


@pytest.mark.parametrize("flags, move_to, has_move, status, words", [
    ((b"\\Answered", b"\\Seen", b"\\*"), None, False, Status.OK, "custom keyword $MailbotDone allowed in 'INBOX'"),
    ((b"\\Seen", b"$MailbotDone"), None, False, Status.OK, "allowed"),  # the keyword itself is listed
    ((b"\\Seen", b"$mailbotdone"), None, False, Status.OK, "allowed"),
    ((b"\\Answered", b"\\Seen"), None, True, Status.FAIL, "(PERMANENTFLAGS: \\Answered \\Seen)"),
    ((), None, True, Status.FAIL, "(PERMANENTFLAGS: none)"),
    ((b"\\Seen",), "Processed", True, Status.OK, "processed mail is moved to 'Processed'"),
    ((b"\\Seen",), "Processed", False, Status.FAIL, "offers no MOVE"),
])
def test_keyword_verdict(flags, move_to, has_move, status, words):
    check = keyword_verdict({"INBOX": flags}, "$MailbotDone", move_to, has_move, "imap.example.be",
                            "mailboxes.bosa.imap")
    assert check.status is status and words in check.detail, check.line()


def test_the_sent_folder_can_refuse_keywords_too():
    check = keyword_verdict({"INBOX": (b"\\*",), "Sent": (b"\\Seen",)}, "$MailbotDone", None, True, "h", "s")
    assert check.status is Status.FAIL and "'Sent'" in check.detail


def test_skipped_steps_name_the_failure_behind_them():
    steps = [Step("a", lambda: Check(Status.FAIL, "a", "a broke", "fix a")),
             Step("b", lambda: Check(Status.OK, "b", "b ran"), ("a",)),
             Step("c", lambda: Check(Status.OK, "c", "c ran"), ("b",)),
             Step("d", lambda: Check(Status.OK, "d", "d ran")),
             Step("e", lambda: 1 / 0)]
    checks = list(run_steps("x", steps))
    assert [c.status for c in checks] == [Status.FAIL, Status.SKIPPED, Status.SKIPPED, Status.OK, Status.FAIL]
    assert list(lines(checks)) == ["✗ x: a broke — fix a", "- x: b, c skipped (a failed)", "✓ x: d ran",
                                   "✗ x: e: ZeroDivisionError: division by zero — unexpected: please report it "
                                   "with this line"]


def test_database_unreachable_and_not_yet_created(tmp_path):
    (tmp_path / "afile").write_text("")
    checks = list(run_steps("database", DatabaseProbe(f"sqlite:///{tmp_path}/afile/bot.sqlite").steps()))
    assert checks[0].status is Status.FAIL and "cannot be created" in checks[0].detail
    assert checks[1].status is Status.SKIPPED and checks[1].blocked_by == "reachable"
    fresh = tmp_path / "new" / "bot.sqlite"
    checks = list(run_steps("database", DatabaseProbe(f"sqlite:///{fresh}").steps()))
    assert all(c.status is Status.OK for c in checks) and not fresh.exists()  # never created by the doctor


def test_database_behind_the_newest_migration_is_a_warning(tmp_path):
    url = f"sqlite:///{tmp_path}/bot.sqlite"
    open_database(url).dispose()
    revisions = [r.revision for r in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()]
    older = revisions[1]  # the one before the newest (walked newest first)
    with sqlite3.connect(tmp_path / "bot.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (older,))
    checks = list(run_steps("database", DatabaseProbe(url).steps()))
    assert checks[1].status is Status.WARN and "1 newer migration(s)" in checks[1].detail, checks[1].line()


def test_send_test_goes_to_loopback_only_under_tests():
    assert doctor.may_send_to("127.0.0.1") and not doctor.may_send_to("smtp.office365.com")


def test_a_configuration_that_does_not_load_is_one_line(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[mailboxes.worldline]\naddress = "a@worldline.localhost"\n')
    assert main(["doctor", "--config", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("✗ config: ") and "bosa must be configured" in out[0] and len(out) == 2


def test_the_daemons_connection_errors_name_host_and_step(dovecot, imap_user):
    unresolvable = Imap(host="imap.bosa.invalid", user="x", password_env="X")
    with pytest.raises(ConnectionStepFailed, match=r"^cannot resolve imap\.bosa\.invalid: ") as err:
        ImapFolder(unresolvable, "pw", "INBOX", timeout=5).connect()
    assert isinstance(err.value, ImapError)  # the watcher waits it out as a lost connection
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        closed = Imap(host="127.0.0.1", port=port, user="x", security="plain", password_env="X")
        with pytest.raises(ConnectionStepFailed, match=rf"^cannot connect to 127\.0\.0\.1: port {port}: "):
            ImapFolder(closed, "pw", "INBOX", timeout=5).connect()
    wrong = Imap(host=dovecot.host, port=dovecot.port, user=imap_user[0], security="plain", password_env="X")
    with pytest.raises(ImapLoginFailed, match=r"^login refused by 127\.0\.0\.1: .*AUTHENTICATIONFAILED"):
        ImapFolder(wrong, "not-the-password", "INBOX", timeout=5).connect()


class TlsFront:
    """TLS on 127.0.0.1 in front of the session's plain Dovecot, with a self-signed certificate:
    the TLS and certificate step against a real handshake."""

    def __init__(self, target, folder):
        self.cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(self.cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(self.cert, key)
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()  # the client refused the certificate
            return
        with tls, socket.create_connection(self.target) as upstream:
            # One thread for both directions: an SSL socket must not be read and written at once.
            while True:
                readable = [tls] if tls.pending() else select.select([tls, upstream], [], [], 10)[0]
                if not readable:
                    return
                for src, dst in ((tls, upstream), (upstream, tls)):
                    if src in readable:
                        try:
                            data = src.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        dst.sendall(data)

    def close(self):
        self.listener.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_tls_certificate_checked_for_real(dovecot, make_imap_user, imap_connect, tmp_path, monkeypatch):
    front = TlsFront((dovecot.host, dovecot.port), tmp_path)
    try:
        user, password = new_user(make_imap_user, imap_connect)
        monkeypatch.setenv("DOCTOR_TLS_PW", password)
        imap = Imap(host="127.0.0.1", port=front.port, user=user, security="tls", password_env="DOCTOR_TLS_PW")

        def run():
            probe = doctor.ImapProbe("worldline", imap, timeout=5, poll_seconds=60)
            try:
                return {c.label: c for c in run_steps("worldline imap", probe.steps())}
            finally:
                probe.close()

        untrusted = run()["tls"]
        assert untrusted.status is Status.FAIL, untrusted.line()
        assert "certificate verify failed" in untrusted.detail and "is not trusted here" in untrusted.todo
        monkeypatch.setenv("SSL_CERT_FILE", str(front.cert))  # this machine now trusts it
        checks = run()
        assert all(c.status is Status.OK for c in checks.values()), [c.line() for c in checks.values()]
        assert checks["tls"].detail.startswith("TLS TLSv1.") and "certificate verified, valid until" in checks["tls"].detail
    finally:
        front.close()
