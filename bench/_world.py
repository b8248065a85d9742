"""What the mail benchmarks share: a private Dovecot and a LocalSmtp on 127.0.0.1 in a fresh
temporary folder, settings pointing at them, the daemon run as `python -m mailbot run` in a
subprocess, and order forms made quickly in bulk.

Not a benchmark itself (bench/latency.py, bench/backlog.py and bench/scale.py import it).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from mailbot.forms import check_form, load_rules  # noqa: E402
from mailbot.forms.builder import complete_values, fill_form  # noqa: E402
from mailbot.store.models import FolderState  # noqa: E402
from mailbot.transport.sandbox import DovecotServer, LocalSmtp, dovecot_available  # noqa: E402

FORM_RULES = load_rules()

WL = "ecom-belgium@worldline.localhost"
BOSA = "epayment@bosa.localhost"
WL_STAFF = "morad.staff@worldline.localhost"
BOSA_STAFF = "service.manager@bosa.localhost"
PASSWORD_ENV = "MAILBOT_BENCH_{}_PW"


# --- numbers -------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[int(rank) - 1]


def vm_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """The direct children of a process (the daemon's reader process), from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def readers_rss(pid: int) -> int:
    """kB of VmRSS of a daemon's children (its reader processes)."""
    return sum(vm_status(c).get("VmRSS", 0) for c in children(pid))


def cpu_seconds(pid: int | str = "self", children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its waited-for children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of a process group: its live processes, plus the children its leader reaped
    (Dovecot's master reaps its imap and login processes)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += cpu_seconds(stat.parent.name, children=stat.parent.name == str(pgid))
    return total


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), "0")
    return (f"{os.cpu_count()} cores ({cpu}), {int(mem) / 1024 / 1024:.0f} GiB, Python {sys.version.split()[0]}, "
            f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")


# --- order forms in bulk -------------------------------------------------------------------------

PLACEHOLDER = "ZZBENCHPROJECTZZ"


class FormFactory:
    """Real order forms with a different project name each, made in ~2 ms instead of ~50 ms.

    `fill_form` runs once per variant with a placeholder project name; each form is then that
    workbook with the placeholder replaced in its shared strings (the zip is written again).
    The first form of each variant is checked with `check_form` to read back its own name.
    """

    VARIANTS = {
        "fr": ("fr", {}),
        "nl": ("nl", {"enterprise_number": 207502301, "vat_number": "BE0207.502.301",
                      "business_contact_phone": 32475123456}),
        "fr-problems": ("fr", {"expected_yearly_transactions": "beaucoup", "technical_contact_phone": "",
                               "settlement_iban": "BE71 0961 2345 6760"}),
        "nl-problems": ("nl", {"pm_bancontact": None, "pm_visa": None, "pm_mastercard": None,
                               "shop_url": "http://webshop.lier.be", "signatory_name": None}),
    }

    def __init__(self) -> None:
        self.templates: dict[str, bytes] = {}
        self.checked: set[str] = set()
        for name, (lang, changes) in self.VARIANTS.items():
            self.templates[name] = fill_form(lang, complete_values(lang, project_name=PLACEHOLDER, **changes), rules=FORM_RULES)

    def make(self, variant: str, project: str) -> bytes:
        source = zipfile.ZipFile(io.BytesIO(self.templates[variant]))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                data = source.read(info)
                if PLACEHOLDER.encode() in data:
                    data = data.replace(PLACEHOLDER.encode(), escape(project).encode())
                target.writestr(info, data)
        form = out.getvalue()
        if variant not in self.checked:
            check = check_form(form, rules=FORM_RULES)
            expected_complete = "problems" not in variant
            if check.values.get("project_name") != project or check.complete != expected_complete:
                raise SystemExit(f"FormFactory: the {variant} form does not read back as made "
                                 f"({check.values.get('project_name')!r}, complete={check.complete})")
            self.checked.add(variant)
        return form


COMMUNES = ["sambreville", "namur", "liege", "mons", "charleroi", "tournai", "arlon", "wavre", "nivelles", "dinant",
            "huy", "spa", "ath", "lier", "gent", "brugge", "leuven", "mechelen", "hasselt", "genk", "aalst", "kortrijk",
            "ieper", "oostende", "turnhout", "geel", "lokeren", "ninove", "tienen", "diest", "bastogne", "marche",
            "ciney", "waterloo", "ottignies", "gembloux", "vise", "eupen", "malmedy", "zottegem"]
PEOPLE = ["marie.dubois", "an.janssens", "claire.martin", "koen.peeters", "luc.lambert", "els.maes", "jan.willems",
          "sophie.leroy", "pieter.claes", "nathalie.dupont", "tom.wouters", "isabelle.simon", "bart.goossens",
          "julie.laurent", "wim.desmet", "anne.renard", "dirk.hermans", "camille.moreau", "sarah.jacobs",
          "olivier.fontaine"]


def client_address(n: int) -> str:
    """A distinct, real-looking client address for each n (RFC 3834 limits are per address)."""
    return f"{PEOPLE[n % len(PEOPLE)]}{'' if n < len(PEOPLE) else n // len(PEOPLE)}@{COMMUNES[n % len(COMMUNES)]}.be"


def project_name(n: int, lang: str) -> str:
    commune = COMMUNES[n % len(COMMUNES)].capitalize()
    return f"Paiements en ligne {commune} {n}" if lang == "fr" else f"Online betalingen {commune} {n}"


# --- the servers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arrival:
    at: float  # time.perf_counter() when the whole message had reached the server
    in_reply_to: str
    purpose: str
    rcpt_tos: tuple[str, ...]


class TimedSmtp(LocalSmtp):
    """LocalSmtp that stamps each message with perf_counter() when its DATA is complete (before
    the local IMAP delivery) and keeps only these stamps, not the messages."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[Arrival] = []
        self.arrived = threading.Condition()
        self._headers = email.parser.BytesHeaderParser(policy=email.policy.compat32)

    def _receive(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> str:
        at = time.perf_counter()
        head = self._headers.parsebytes(data)
        reply = super()._receive(mail_from, rcpt_tos, data)
        with self._lock:
            self._envelopes.clear()  # the benchmarks keep no message bodies in memory
        with self.arrived:
            self.arrivals.append(Arrival(at, (head.get("In-Reply-To") or "").strip().strip("<>"),
                                         head.get("X-Mailbot-Purpose") or "", tuple(rcpt_tos)))
            self.arrived.notify_all()
        return reply

    def wait_reply(self, message_id: str, timeout: float) -> Arrival | None:
        """The first arrival answering `message_id` (without angle brackets), waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for arrival in reversed(self.arrivals):
                    if arrival.in_reply_to == message_id:
                        return arrival
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)


def to_toml(data: dict, prefix: str = "") -> str:
    """Enough TOML for a bench configuration: nested tables of strings, numbers and lists."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    lines = [f"[{prefix}]"] if prefix and scalars else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in scalars.items()]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(lines) + "\n"


class BenchWorld:
    """A private Dovecot (users worldline, bosa, outside and any `extra_users`) and a TimedSmtp,
    in a fresh folder under the system temp dir, removed by close()."""

    def __init__(self, extra_users: tuple[str, ...] = (), prefix: str = "mailbot-bench-") -> None:
        if not dovecot_available():
            raise SystemExit("Dovecot is not installed (Debian package dovecot-imapd; scripts/dev.sh test installs it)")
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        if os.geteuid() == 0:  # Dovecot runs as nobody, who must be able to enter the folder
            os.chmod(self.folder, 0o711)
        self.dovecot = DovecotServer(self.folder / "dovecot").start()
        self.users: dict[str, tuple[str, str]] = {}
        for name in ("worldline", "bosa", "outside", *extra_users):
            password = f"pw-{name}-{random.randrange(10**9)}"
            self.dovecot.add_user(name, password)
            self.users[name] = (name, password)
            os.environ[PASSWORD_ENV.format(name.upper())] = password
        self.smtp = TimedSmtp(self.dovecot.host, self.dovecot.port,
                              {WL: self.users["worldline"], BOSA: self.users["bosa"]}, outside=self.users["outside"])
        self.smtp.start()
        self.db_path = self.folder / "bot.sqlite"
        self.proc: subprocess.Popen | None = None
        self.data: dict = {
            "mailboxes": {
                name: {"address": address, "staff": [staff], "language": "fr",
                       "imap": {"host": self.dovecot.host, "port": self.dovecot.port, "user": name,
                                "security": "plain", "password_env": PASSWORD_ENV.format(name.upper())},
                       # the mails are appended as the sandbox's SMTP server delivers them: stamped
                       "authentication": {"authserv_ids": ["sandbox.localhost"]}}
                for name, address, staff in (("worldline", WL, WL_STAFF), ("bosa", BOSA, BOSA_STAFF))},
            "smtp": {"host": self.smtp.host, "port": self.smtp.port, "security": "plain"},
            "database": {"url": f"sqlite:///{self.db_path}"},
            # As if the bot had first started long ago: the mail appended before the daemon
            # starts is answered, not filed as history (bench/history.py takes this away).
            "daemon": {"send_retry_max_seconds": 5, "backoff_max_seconds": 2,
                       "history_before": "2000-01-01T00:00:00+00:00"},
        }

    # --- IMAP helpers ---

    def imap(self, user: str, folder: str = "INBOX"):
        import socket

        from imapclient import IMAPClient

        client = IMAPClient(self.dovecot.host, port=self.dovecot.port, ssl=False, timeout=30)
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.login(*self.users[user])
        if folder:
            client.select_folder(folder)
        return client

    def append_dated(self, user: str, items: list[tuple[bytes, dt.datetime]], folder: str = "INBOX",
                     per_command: int = 250) -> float:
        """APPEND each mail with its INTERNALDATE, quickly: on one connection, `per_command` mails
        a MULTIAPPEND (RFC 3502) with non-synchronising literals (LITERAL+, RFC 7888), so that
        nothing waits for the server between mails. Seconds taken."""
        import socket

        from imapclient.datetime_util import datetime_to_INTERNALDATE

        started = time.perf_counter()
        sock = socket.create_connection((self.dovecot.host, self.dovecot.port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")

        def command(tag: str, parts: list[bytes]) -> bytes:
            sock.sendall(b"".join(parts))
            while True:
                line = reader.readline()
                if not line:
                    raise SystemExit("append_dated: the server closed the connection")
                if line.startswith(tag.encode() + b" "):
                    if not line.startswith(tag.encode() + b" OK"):
                        raise SystemExit(f"append_dated: {line.decode(errors='replace').strip()}")
                    return line
                if line.rstrip().endswith(b"}"):
                    raise SystemExit("append_dated: the server asked for a synchronising literal")

        reader.readline()  # the greeting
        user_name, password = self.users[user]
        command("a0", [f'a0 LOGIN "{user_name}" "{password}"\r\n'.encode()])
        for n, start in enumerate(range(0, len(items), per_command)):
            tag = f"m{n}"
            parts = [f'{tag} APPEND "{folder}"'.encode()]
            for raw, when in items[start:start + per_command]:
                parts.append(f' () "{datetime_to_INTERNALDATE(when)}" {{{len(raw)}+}}\r\n'.encode())
                parts.append(raw)
            parts.append(b"\r\n")
            command(tag, parts)
        command("z0", [b"z0 LOGOUT\r\n"])
        sock.close()
        return time.perf_counter() - started

    # --- the daemon as `python -m mailbot run` ---

    def start_daemon(self, log_name: str = "daemon.log", launcher: str | None = None) -> subprocess.Popen:
        """`python -m mailbot run --config X` (or `python -c LAUNCHER run --config X`)."""
        config = self.folder / "bot.toml"
        config.write_text(to_toml(self.data))
        self.daemon_log = self.folder / log_name
        command = ["-c", launcher] if launcher else ["-m", "mailbot"]
        with open(self.daemon_log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, *command, "run", "--config", str(config)],
                                         cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self.proc

    def engine(self):
        return create_engine(f"sqlite:///{self.db_path}")

    def watchers_connected(self, engine, started_after=None) -> bool:
        """True once the four watchers (two INBOX, two Sent) have reported to the database."""
        if not self.db_path.exists():
            return False
        try:
            with Session(engine) as session:
                rows = session.exec(select(FolderState)).all()
        except Exception:  # noqa: BLE001 - the schema is not there yet
            return False
        return len(rows) >= 4 and all(r.last_contact and (started_after is None or r.last_contact >= started_after)
                                      for r in rows)

    def stop_daemon(self, timeout: float = 30.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None

    def daemon_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def close(self) -> None:
        self.stop_daemon()
        self.smtp.stop()
        self.dovecot.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> BenchWorld:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    return None


def dovecot_version() -> str:
    from mailbot.transport.sandbox import dovecot_binary

    try:
        return subprocess.run([dovecot_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError, TypeError):
        return "?"


MID = re.compile(r"<([^>]+)>")
