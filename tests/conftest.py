"""Fixtures for tests against real mail servers on 127.0.0.1: one Dovecot for the whole session,
a fresh IMAP user (empty mailboxes) for each test, and a LocalSmtp delivering into that Dovecot."""

import contextlib
import itertools
import secrets
import shutil
import tempfile

import pytest
from imapclient import IMAPClient

from mailbot.transport.sandbox import DovecotServer, LocalSmtp, dovecot_available, imap_append

_serial = itertools.count(1)


def pytest_configure(config):
    # LocalSmtp's AUTH without TLS is deliberate (loopback); pytest resets the filter that
    # mailbot.transport.sandbox sets at import.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture(scope="session")
def dovecot():
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (Debian package dovecot-imapd; scripts/dev.sh test installs it)")
    # Not pytest's tmp_path: as root Dovecot runs as nobody, who cannot enter /tmp/pytest-of-root (0700).
    directory = tempfile.mkdtemp(prefix="mailbot-dovecot-")
    server = DovecotServer(directory)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def make_imap_user(dovecot):
    """make_imap_user() -> (name, password) of a user no test has touched: empty mailboxes."""
    def make() -> tuple[str, str]:
        name, password = f"u{next(_serial)}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
        dovecot.add_user(name, password)
        return name, password
    return make


@pytest.fixture
def imap_user(make_imap_user) -> tuple[str, str]:
    return make_imap_user()


@pytest.fixture
def local_smtp(dovecot, make_imap_user):
    """LocalSmtp into the session Dovecot, with its own `outside` catch-all user (smtp.outside)."""
    smtp = LocalSmtp(dovecot.host, dovecot.port, outside=make_imap_user())
    smtp.start()
    yield smtp
    smtp.stop()


@pytest.fixture
def append(dovecot):
    """append(user, password, raw_bytes, folder="INBOX") -> the new message's UID."""
    def append(user: str, password: str, raw_bytes: bytes, folder: str = "INBOX") -> int | None:
        return imap_append(dovecot.host, dovecot.port, user, password, raw_bytes, folder)
    return append


@pytest.fixture
def imap_connect(dovecot):
    """imap_connect(user, password) -> a logged-in IMAPClient, closed after the test."""
    clients = []

    def connect(user: str, password: str) -> IMAPClient:
        client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10)
        clients.append(client)
        client.login(user, password)
        return client

    yield connect
    for client in clients:
        with contextlib.suppress(Exception):  # already dropped, e.g. by a restart; imaplib closes anyway
            client.logout()
