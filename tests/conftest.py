"""Fixtures for tests against real mail servers on 127.0.0.1: one Dovecot for the whole session
(one per xdist worker), a fresh IMAP user (empty mailboxes) for each test, and a LocalSmtp
delivering into that Dovecot.

Also the suite's tiers (`--tier`; scripts/dev.sh test runs the fast one, then the other two
side by side). A test that uses a server fixture (below, or tests/mailworld.py) is marked
`integration` here; one that starts a server or a process by itself carries the mark in its
file, and a test without it that tries is stopped with a message saying so. The long property
runs (marked slow) are a tier of their own: CPU-bound on small inputs, they run beside the
integration tests, which mostly wait. The rest is the fast tier. And each test's databases
start as a copy of one migrated template, made once per session.
"""

import contextlib
import ipaddress
import itertools
import multiprocessing.process
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mailbot.store import db
from mailbot.transport import sandbox
from mailbot.transport.sandbox import DovecotServer, LocalSmtp, dovecot_available, imap_append

# Tests talk to this machine only. A name lookup goes to the resolver, which is not on this
# machine: names other than loopback ones (localhost, *.localhost, 127.x, ::1) are refused
# here, as an unresolvable name would be (`imap.bosa.invalid` in the doctor's tests).
_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = (host.decode() if isinstance(host, bytes) else host or "").rstrip(".").lower()
    try:
        local = ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        local = name in ("", "localhost") or name.endswith(".localhost")
    if not local:
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: tests resolve no name outside this machine")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only

_serial = itertools.count(1)

# Every fixture that starts a server depends on one of these (pytest lists a test's fixtures
# with those they depend on).
SERVER_FIXTURES = frozenset({"dovecot", "local_smtp", "oidc_provider", "chrome"})

TIERS = ("fast", "properties", "integration")


def pytest_addoption(parser):
    parser.addoption("--tier", choices=("all", *TIERS), default="all",
                     help="fast: no server or process, no long property run; properties: the long property "
                          "runs (marked slow; CPU-bound, small inputs); integration: servers and processes, "
                          "the long rounds first; all (default): the three, in that order")


def pytest_configure(config):
    # LocalSmtp's AUTH without TLS is deliberate (loopback); pytest resets the filter that
    # mailbot.transport.sandbox sets at import.
    config.addinivalue_line("filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning")


def tier(item) -> str:
    if item.get_closest_marker("integration") is not None:
        return "integration"
    if item.get_closest_marker("slow") is not None and getattr(item.obj, "is_hypothesis_test", False):
        return "properties"
    return "fast"


@pytest.hookimpl(tryfirst=True)  # before -m selects on the mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    chosen = config.getoption("tier")
    if chosen != "all":
        keep = [item for item in items if tier(item) == chosen]
        kept = set(keep)
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = keep
    # Tier by tier, and in each the long rounds first: the longest start first, so that xdist's
    # workers finish together (the sort is stable).
    items.sort(key=lambda item: (TIERS.index(tier(item)), item.get_closest_marker("slow") is None))


@pytest.fixture(autouse=True)
def _servers_only_in_integration_tests(request, monkeypatch):
    """A test not marked integration that starts a server or a process fails, saying why: the
    fast tier stays fast, and the mark stays true without anyone keeping a list."""
    if request.node.get_closest_marker("integration"):
        return

    def refuse(*_args, **_kwargs):
        pytest.fail(f"{request.node.nodeid} starts a server or a process: use a server fixture "
                    "(tests/conftest.py) or mark it @pytest.mark.integration", pytrace=False)

    for owner, name in ((sandbox._ImapProcess, "start"), (sandbox.LocalSmtp, "start"),
                        (subprocess.Popen, "__init__"), (multiprocessing.process.BaseProcess, "start")):
        monkeypatch.setattr(owner, name, refuse)


# --- one migrated database, copied ---------------------------------------------------------

@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> Path:
    """An empty store at the newest migration, made once per session (per xdist worker)."""
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite"
    engine = db.open_database(f"sqlite:///{path}")
    with engine.connect() as connection:  # everything in the main file (WAL folded in): copyable
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(autouse=True)
def databases_from_the_template(request, monkeypatch):
    """open_database() on a SQLite file that does not exist yet copies the migrated template and
    runs no migration. Tests of the migrations themselves are marked `migrations` and run them."""
    if request.node.get_closest_marker("migrations"):
        return
    template = request.getfixturevalue("migrated_database")
    copied: set[str] = set()
    create_engine, upgrade = db.create_engine, db.command.upgrade

    def create_from_template(url, *args, **kwargs):
        path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if path is not None and not path.exists():
            shutil.copyfile(template, path)
            copied.add(url)
        return create_engine(url, *args, **kwargs)

    def upgrade_unless_copied(cfg, revision, *args, **kwargs):
        if cfg.get_main_option("sqlalchemy.url") in copied and revision == "head":
            return None
        return upgrade(cfg, revision, *args, **kwargs)

    monkeypatch.setattr(db, "create_engine", create_from_template)
    monkeypatch.setattr(db.command, "upgrade", upgrade_unless_copied)


# --- servers ---------------------------------------------------------------------------------

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


@pytest.fixture
def oidc_provider():
    """An OpenID Connect provider on 127.0.0.1 (tests/oidc_provider.py): add the app's callback
    to `.redirect_uris`, choose who signs in next with `.sign_in_as(email, name)`."""
    from oidc_provider import running_provider

    with running_provider() as provider:
        yield provider


@pytest.fixture
def chrome(tmp_path_factory):
    """A headless Chromium driven by selenium (tests/browser.py), quit after the test. Skipped
    when Debian's chromium or chromium-driver is missing, but failed under CI=true."""
    from browser import running_chrome, skip_or_fail_without_a_browser

    skip_or_fail_without_a_browser()
    with running_chrome(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver
