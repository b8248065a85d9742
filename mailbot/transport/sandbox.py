"""Real mail servers on 127.0.0.1 for the bot and its tests: Dovecot (or pymap) for IMAP, and
an aiosmtpd server that delivers what it receives into those mailboxes instead of relaying it.

Nothing here talks to another machine. A server's directory holds its generated config, its
users (one file each), its log, and for Dovecot one Maildir per user under home/.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from stat import S_IMODE, S_IXOTH
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from imapclient import IMAPClient

from mailbot.errors import SandboxError
from mailbot.private_files import private_dir
from mailbot.transport.stamp import AUTHSERV_ID, stamp

HOST = "127.0.0.1"
# Dovecot refuses to run its login process as root, so as root every server process runs as
# "nobody" and owns the files it must write.
NOBODY = 65534
TEAM_USERS = ("worldline", "bosa")
OUTSIDE = "outside"  # catch-all mailbox for mail to anyone who is not local (clients)
DEFAULT_ADDRESSES = {"ecom-belgium@worldline.localhost": "worldline", "epayment@bosa.localhost": "bosa"}

# LocalSmtp's AUTH without TLS is deliberate (loopback only); aiosmtpd warns at every connection.
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning, "aiosmtpd.smtp")

_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_PASSWORD = re.compile(r"[!-9;-~]{1,128}\Z")  # printable, no space and no ':' (field separator)


def free_port(host: str = HOST) -> int:
    """A port free now; another process could take it before it is bound again (rare on loopback)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_free(host: str, port: int, wait: float = 2.0) -> bool:
    """Whether `port` can be listened on, waiting a little: a server stopped a moment ago may
    still hold it."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.1)


def dovecot_binary() -> str | None:
    # /usr/sbin is often missing from a normal user's PATH.
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


def dovecot_available() -> bool:
    """True when a private Dovecot can be started here (as root it also needs setpriv)."""
    return dovecot_binary() is not None and (os.geteuid() != 0 or shutil.which("setpriv") is not None)


def imap_append(host: str, port: int, user: str, password: str, raw: bytes,
                folder: str = "INBOX", flags: tuple[str, ...] = ()) -> int | None:
    """APPEND one message; returns its UID when the server says it (UIDPLUS), else None."""
    with IMAPClient(host, port=port, ssl=False, timeout=10) as client:
        client.login(user, password)
        answer = client.append(folder, raw, flags=flags)
    found = re.search(rb"APPENDUID \d+ (\d+)", answer if isinstance(answer, bytes) else answer.encode())
    return int(found.group(1)) if found else None


def _check_user(name: str, password: str) -> None:
    if not _USER_NAME.match(name):
        raise SandboxError(f"user name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if not _PASSWORD.match(password):
        raise SandboxError(f"password for {name!r}: use 1 to 128 printable characters, no space or ':'")


def _runtime_ids() -> tuple[int, int]:
    return (NOBODY, NOBODY) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def _write_private(path: Path, text: str, ids: tuple[int, int]) -> None:
    """Replace `path` atomically (a server may read it at any time), mode 0600, owned by `ids`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    if os.geteuid() == 0:
        os.chown(tmp, *ids)
    os.replace(tmp, path)


def _enterable_by_nobody(folder: Path, made: list[Path]) -> None:
    """As root, Dovecot runs as nobody, who must be able to enter `folder` and every folder above
    it. The folders made for the sandbox (`made`, and `folder`) get the search bit, not the read
    one; a folder above that was there before is not ours to change: said, with what to do."""
    for here in (folder, *made):
        os.chmod(here, here.stat().st_mode | 0o111)  # noqa: S103 - search only, no read
    for here in folder.parents:
        mode = here.stat().st_mode
        if not mode & S_IXOTH:
            raise SandboxError(
                f"as root the sandbox's Dovecot runs as nobody, who cannot enter {here} (mode {S_IMODE(mode):o}): "
                "keep the sandbox in a folder outside it (--sandbox DIR, or XDG_STATE_HOME)")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _others_running(pgid: int) -> bool:
    """True while a process of group `pgid` other than its leader runs (zombies do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z" and stat.parent.name != str(pgid):
            return True
    return False


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(512).startswith(b"* OK")
    except OSError:
        return False


class _ImapProcess:
    """An IMAP server run as a child process from the files in `directory`."""

    label = "IMAP server"
    log_name = "server.log"
    # True when the leader process may be killed once it is alone (it keeps no mail itself).
    leader_holds_no_data = False

    def __init__(self, directory: str | os.PathLike, port: int | None = None, host: str = HOST) -> None:
        self.directory = Path(directory).resolve()
        self._host = host
        self._port = port
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._ids = _runtime_ids()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise SandboxError(f"{self.label} has no port before its first start()")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    def _command(self) -> list[str]:
        """Write the server's files and return the command that runs it in the foreground."""
        raise NotImplementedError

    def add_user(self, name: str, password: str) -> None:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and return once it sends its greeting."""
        if self.pid is not None:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = free_port(self._host)
        else:
            self._wait_port_free(timeout)
        command = self._command()
        with open(self.log_path, "ab") as log:
            try:
                # A session of its own, so that stop() can signal all of its processes.
                self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                raise SandboxError(f"{self.label}: cannot run {command[0]}: {exc}") from None
        deadline = time.monotonic() + timeout
        while not _greets(self._host, self._port):
            if (status := self._proc.poll()) is not None:
                self._proc = None
                raise self._failure(f"it exited with status {status}")
            if time.monotonic() > deadline:
                self.stop()
                raise self._failure(f"no IMAP greeting within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the server's whole process group, wait for it, SIGKILL what is left.

        The group, not only the master: Dovecot's master exits on SIGTERM but leaves its imap
        processes serving their clients; signalled directly they say BYE and exit.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        deadline = time.monotonic() + timeout
        next_term = 0.0
        while proc.poll() is None and time.monotonic() < deadline:
            if time.monotonic() >= next_term:
                # Again from time to time: a child forked meanwhile missed the first one.
                _signal_group(proc.pid, signal.SIGTERM)
                next_term = time.monotonic() + 0.2
            elif self.leader_holds_no_data and not _others_running(proc.pid):
                break
            time.sleep(0.02)
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port with the same users and mail."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_port_free(self, timeout: float) -> None:
        # Else we could take another server's greeting for ours. Waits a little: right after a
        # stop() a killed child may still hold the listening socket.
        deadline = time.monotonic() + min(timeout, 2.0)
        while True:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self._host, self._port))
                    return
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise SandboxError(f"{self.label}: port {self._host}:{self._port} is in use ({exc})") from None
            time.sleep(0.05)

    def _failure(self, reason: str) -> SandboxError:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            tail = ["(no log)"]
        return SandboxError(f"{self.label} in {self.directory} did not start on {self._host}:{self._port}: "
                            f"{reason}. Last lines of {self.log_path}:\n" + "\n".join(tail))


class DovecotServer(_ImapProcess):
    """A private Dovecot (IMAP only, plaintext, loopback) run from a config generated in `directory`."""

    label = "Dovecot"
    log_name = "dovecot.log"
    # Once its children are gone the master can still sleep 1-3 s before it exits, keeping
    # the port: with nothing left to save, it is killed then.
    leader_holds_no_data = True

    def __init__(self, directory: str | os.PathLike, port: int | None = None, host: str = HOST,
                 binary: str | None = None) -> None:
        super().__init__(directory, port, host)
        self.binary = binary or dovecot_binary()

    def add_user(self, name: str, password: str) -> None:
        """Add or replace a user, also while running.

        One passwd-file per user: Dovecot checks a passwd-file for changes at most once a
        second, so a user added to a shared file right after another login would be unknown
        for up to a second; a new file is read at its first lookup. (A changed password can
        still take up to a second to be seen.)
        """
        _check_user(name, password)
        path = self.directory / "users" / name
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            old_mtime = path.stat().st_mtime if path.exists() else 0
            # The explicit {PLAIN} keeps a password that starts with "{" from naming a scheme.
            _write_private(path, f"{name}:{{PLAIN}}{password}::::::\n", self._ids)
            # Dovecot re-reads the file when its mtime (whole seconds) or size changes: a new
            # password of the same length written within the same second must differ too.
            mtime = max(time.time(), old_mtime + 1)
            os.utime(path, (mtime, mtime))

    def _command(self) -> list[str]:
        if self.binary is None:
            raise SandboxError("Dovecot is not installed (Debian package dovecot-imapd)")
        uid, gid = self._ids
        try:
            user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
        except KeyError:
            raise SandboxError(f"Dovecot needs a user and group name for uid {uid} / gid {gid}") from None
        d = self.directory
        for sub in ("run", "state", "home", "users"):
            (d / sub).mkdir(exist_ok=True)
        # Left by a master killed while it rewrote its instance list; a new master would wait
        # on it (start() runs only when no server of ours is running in this directory).
        (d / "state" / "instances.lock").unlink(missing_ok=True)
        conf = d / "dovecot.conf"
        conf.write_text(_DOVECOT_CONF.format(dir=d, host=self._host, port=self._port, uid=uid, gid=gid,
                                             user=user, group=group, log=self.log_path))
        self.log_path.touch()
        command = [self.binary, "-F", "-c", str(conf)]
        if os.geteuid() == 0:
            for path in (d, d / "run", d / "state", d / "home", d / "users", conf, self.log_path):
                os.chown(path, uid, gid)
            command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
        return command


_DOVECOT_CONF = """\
# Generated by mailbot.transport.sandbox: a private Dovecot on loopback for tests and the demo.
protocols = imap
listen = {host}
base_dir = {dir}/run
# Else Dovecot wants /var/lib/dovecot/instances.
state_dir = {dir}/state
log_path = {log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# A real server waits 2 s before refusing a login, and anvil then delays every login from the
# same IP (up to 15 s): tests of wrong passwords would slow all the tests after them.
auth_failure_delay = 0
# Every process runs as this one user; without default_internal_group: "Failed to start listeners".
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  # Chrooting needs root.
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class PymapServer(_ImapProcess):
    """pymap's maildir backend, for machines without Dovecot; the same interface as DovecotServer.

    A fallback, not a stand-in: APPEND is slower (about 70 ms), IDLE answers arrive in pieces
    that imapclient's idle_check() cannot read (imapclient issue #519), custom keywords such as
    $MailbotDone are silently dropped (no \\* in PERMANENTFLAGS), and messages come back with
    bare LF line ends.
    """

    label = "pymap"
    log_name = "pymap.log"

    def add_user(self, name: str, password: str) -> None:
        """Add or replace a user; pymap reads its user files at each login."""
        _check_user(name, password)
        try:
            from pysasl.hashing import BuiltinHash
        except ImportError:
            raise SandboxError("pymap is not installed (pip install pymap)") from None
        base = self.directory / "mail"
        with self._lock:
            base.mkdir(parents=True, exist_ok=True)
            # pymap checks with this hash when passlib is absent; few rounds keep logins fast.
            entries = {"pymap-etc-passwd": f"{name}:x::::{name}:",
                       "pymap-etc-shadow": f"{name}:{BuiltinHash(rounds=1000).hash(password)}:::::::"}
            for file, entry in entries.items():
                path = base / file
                lines = path.read_text().splitlines() if path.exists() else []
                lines = [line for line in lines if line.split(":", 1)[0] != name] + [entry]
                _write_private(path, "\r\n".join(lines) + "\r\n", self._ids)

    def _command(self) -> list[str]:
        try:
            import pymap  # noqa: F401
        except ImportError:
            raise SandboxError("pymap is not installed (pip install pymap)") from None
        (self.directory / "mail").mkdir(exist_ok=True)
        return [sys.executable, "-c", "from pymap.main import main; main()", "--no-tls",
                "--host", self._host, "--port", str(self._port), "maildir", str(self.directory / "mail")]


@dataclass(frozen=True)
class Envelope:
    """One message as LocalSmtp received it, and the reply it gave."""
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: float  # time.time()
    reply: str

    @property
    def accepted(self) -> bool:
        return self.reply.startswith("250")


class LocalSmtp:
    """An SMTP server on loopback that delivers into the local IMAP mailboxes, never further.

    A recipient in `mailboxes` (address -> (user, password)) gets a copy in that user's INBOX
    with a Delivered-To header; any other recipient (a client) gets a copy in the `outside`
    user's INBOX with X-Sandbox-Rcpt, so a person can read what the bot sent out.
    Like a receiving server, it stamps each copy with Authentication-Results under
    `authserv_id` (its rule for loopback senders: mailbot.transport.stamp).
    """

    def __init__(self, imap_host: str, imap_port: int,
                 mailboxes: Mapping[str, tuple[str, str]] | None = None,
                 outside: tuple[str, str] | None = None, auth: tuple[str, str] | None = None,
                 host: str = HOST, port: int | None = None,
                 on_accept: Callable[[Envelope], None] | None = None,
                 authserv_id: str = AUTHSERV_ID) -> None:
        self.imap_host, self.imap_port = imap_host, imap_port
        self.authserv_id = authserv_id
        self._mailboxes = {a.lower(): tuple(c) for a, c in (mailboxes or {}).items()}
        self.outside = outside
        self.auth = auth
        # Called (in a worker thread) with each accepted message, after its delivery and before
        # the 250 reply goes out: tests hook faults here (a sender killed right after the accept).
        self.on_accept = on_accept
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._envelopes: list[Envelope] = []
        self._faults: list[str] = []
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise SandboxError("LocalSmtp has no port before its first start()")
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def add_mailbox(self, address: str, user: str, password: str) -> None:
        with self._lock:
            self._mailboxes[address.lower()] = (user, password)

    def fail_next(self, count: int = 1, code: int = 451, text: str | None = None) -> None:
        """Answer the next `count` messages with `code` (4xx or 5xx) at the end of DATA."""
        if not 400 <= code <= 599:
            raise ValueError(f"fault code {code} is not 4xx or 5xx")
        text = text or ("4.3.0 Sandbox: try again later" if code < 500 else "5.7.1 Sandbox: message refused")
        with self._lock:
            self._faults.extend([f"{code} {text}"] * count)

    @property
    def envelopes(self) -> list[Envelope]:
        """Every message received since start-up, refused ones included (see Envelope.accepted)."""
        with self._lock:
            return list(self._envelopes)

    def clear(self) -> None:
        with self._lock:
            self._envelopes.clear()

    def start(self) -> Self:
        if self._controller is not None:
            return self
        if self._port is None:
            self._port = free_port(self._host)
        options: dict[str, Any] = {}
        if self.auth:
            # AUTH without TLS is only acceptable because this listens on loopback.
            options = {"auth_required": True, "auth_require_tls": False, "authenticator": self._authenticate}
        # A Controller closes its loop on stop(): a new one for each start, on the same port.
        # A fixed server_hostname spares a DNS lookup (getfqdn) for each connection.
        controller = Controller(_Handler(self), hostname=self._host, port=self._port,
                                server_hostname="sandbox.localhost", **options)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and secrets.compare_digest(auth_data.login, self.auth[0].encode())
              and secrets.compare_digest(auth_data.password, self.auth[1].encode()))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    def _receive(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> str:
        """Runs in a worker thread: deliver, record, and return the SMTP reply."""
        with self._lock:
            reply = self._faults.pop(0) if self._faults else None
            mailboxes = dict(self._mailboxes)
        if reply is None:
            try:
                stamped = stamp(data, mail_from, self.authserv_id)
                for rcpt in rcpt_tos:
                    self._deliver(mail_from, rcpt, stamped, mailboxes)
                reply = "250 2.0.0 OK: delivered locally"
            except Exception as exc:  # noqa: BLE001 -- IMAP down or refusing: the sender must retry, as with a real MTA
                reply = f"451 4.3.0 Sandbox: local delivery failed: {type(exc).__name__}: {exc}"[:400]
        envelope = Envelope(mail_from, tuple(rcpt_tos), data, time.time(), reply)
        with self._lock:
            self._envelopes.append(envelope)
        if envelope.accepted and self.on_accept is not None:
            self.on_accept(envelope)
        return reply

    def _deliver(self, mail_from: str, rcpt: str, data: bytes, mailboxes: dict) -> None:
        # Headers an MTA's final delivery would add, one copy per recipient.
        head = f"Return-Path: <{mail_from}>\r\n"
        if rcpt.lower() in mailboxes:
            (user, password), head = mailboxes[rcpt.lower()], head + f"Delivered-To: {rcpt}\r\n"
        elif self.outside is not None:
            (user, password), head = self.outside, head + f"X-Sandbox-Rcpt: {rcpt}\r\n"
        else:
            return  # not local and no catch-all: recorded in envelopes only
        imap_append(self.imap_host, self.imap_port, user, password, head.encode() + data)


class _Handler:
    def __init__(self, owner: LocalSmtp) -> None:
        self.owner = owner

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's hook name
        # The IMAP client blocks: keep it off the SMTP server's event loop.
        return await asyncio.to_thread(self.owner._receive, envelope.mail_from,
                                       list(envelope.rcpt_tos), envelope.content)


class Sandbox:
    """The bot's whole local mail world: an IMAP server and LocalSmtp, with mail kept in `folder`.

    Users `worldline`, `bosa` and `outside` always exist; `addresses` maps more addresses to
    users (created as needed). Passwords are generated once and kept in credentials.json (0600);
    the ports too, in ports.json, so that a mail program set up once keeps working: a kept port
    taken by another program meanwhile is replaced by a free one, and `notices` says so.
    """

    def __init__(self, folder: str | os.PathLike, addresses: Mapping[str, str] | None = None,
                 smtp_auth: tuple[str, str] | None = None, use_pymap: bool | None = None,
                 imap_port: int | None = None, smtp_port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.addresses = {a.lower(): u for a, u in (addresses or DEFAULT_ADDRESSES).items()}
        use_pymap = not dovecot_available() if use_pymap is None else use_pymap
        self.imap: _ImapProcess = PymapServer(self.folder / "pymap", imap_port) if use_pymap \
            else DovecotServer(self.folder / "dovecot", imap_port)
        self.smtp: LocalSmtp | None = None
        self._smtp_auth = smtp_auth
        self._imap_port, self._smtp_port = imap_port, smtp_port
        self._credentials_path = self.folder / "credentials.json"
        self._ports_path = self.folder / "ports.json"
        self._passwords: dict[str, str] = {}
        self.notices: list[str] = []  # for the person who set a mail program up: a port changed

    def start(self) -> Self:
        made = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        private_dir(self.folder)  # whole mails and passwords: 0700 when created here
        if os.geteuid() == 0 and isinstance(self.imap, DovecotServer):
            _enterable_by_nobody(self.folder, made)
        if self._credentials_path.exists():
            self._passwords = json.loads(self._credentials_path.read_text())
        kept = self._kept_ports()
        try:
            for user in (*TEAM_USERS, OUTSIDE, *self.addresses.values()):
                self.add_user(user)
            if self._imap_port is None and self.imap.pid is None:
                self.imap._port = self._port_for("IMAP", kept.get("imap"))
            self.imap.start()
            for user in TEAM_USERS:
                self._ensure_folder(user, "Sent")
            smtp_port = self._smtp_port or self._port_for("SMTP", kept.get("smtp"))
            self.smtp = LocalSmtp(self.imap_host, self.imap_port,
                                  {a: self.credentials(u) for a, u in self.addresses.items()},
                                  outside=self.credentials(OUTSIDE), auth=self._smtp_auth, port=smtp_port)
            self.smtp.start()
            _write_private(self._ports_path, json.dumps({"imap": self.imap_port, "smtp": self.smtp_port}) + "\n",
                           (os.getuid(), os.getgid()))
        except BaseException:
            self.stop()  # leave no server running behind a failed start
            raise
        return self

    def stop(self) -> None:
        if self.smtp is not None:
            self.smtp.stop()
        self.imap.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _kept_ports(self) -> dict[str, int]:
        try:
            kept = json.loads(self._ports_path.read_text())
            return {k: v for k, v in kept.items() if k in ("imap", "smtp") and isinstance(v, int) and 0 < v < 65536}
        except (OSError, ValueError, AttributeError):
            return {}

    def _port_for(self, label: str, kept: int | None) -> int:
        """The port kept from the last start when it is free, else a new one (and a notice)."""
        if kept is not None and _port_free(HOST, kept):
            return kept
        port = free_port(HOST)
        if kept is not None:
            self.notices.append(f"The sandbox's {label} port {kept} (kept from its last start) is taken by another "
                                f"program: {label} is now {port}; point your mail program at the new port.")
        return port

    def add_user(self, user: str) -> str:
        """Create `user` (or keep its stored password) and return the password."""
        if user not in self._passwords:
            self._passwords[user] = secrets.token_urlsafe(18)
            _write_private(self._credentials_path, json.dumps(self._passwords, indent=1) + "\n",
                           (os.getuid(), os.getgid()))
        self.imap.add_user(user, self._passwords[user])
        return self._passwords[user]

    def map_address(self, address: str, user: str) -> None:
        """Deliver mail for `address` into `user`'s INBOX from now on."""
        password = self.add_user(user)
        self.addresses[address.lower()] = user
        if self.smtp is not None:
            self.smtp.add_mailbox(address, user, password)

    def credentials(self, user: str) -> tuple[str, str]:
        try:
            return user, self._passwords[user]
        except KeyError:
            raise SandboxError(f"no sandbox user {user!r}") from None

    @property
    def imap_host(self) -> str:
        return self.imap.host

    @property
    def imap_port(self) -> int:
        return self.imap.port

    @property
    def smtp_host(self) -> str:
        return self._require_smtp().host

    @property
    def smtp_port(self) -> int:
        return self._require_smtp().port

    def _require_smtp(self) -> LocalSmtp:
        if self.smtp is None:
            raise SandboxError("the sandbox is not started")
        return self.smtp

    def _ensure_folder(self, user: str, folder: str) -> None:
        with IMAPClient(self.imap_host, port=self.imap_port, ssl=False, timeout=10) as client:
            client.login(*self.credentials(user))
            if not client.folder_exists(folder):
                client.create_folder(folder)
                client.subscribe_folder(folder)
