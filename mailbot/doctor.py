"""`mailbot doctor`: check a configuration against its servers, database and files before going live.

For each mailbox's IMAP server and for the SMTP server, one step after the other: name
resolution, TCP, TLS and certificate, login, then what the bot needs once logged in; then the
database, the rules files and the templates. Each step is a small function returning a `Check`
(✓, ! or ✗, what was found, and what to do); a step whose prerequisite failed is shown as
skipped rather than failing in turn. Nothing is changed on the servers: no folder is created, no
flag set, and no mail sent unless asked (`--send-test ADDRESS`).

The connections go through the daemon's own functions (transport/imap.py `open_imap` and
`login`, transport/smtp.py `smtp_options`), so what passes here is what `mailbot run` does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

import aiosmtplib
import imapclient
from imapclient.exceptions import IMAPClientError
from imapclient.imapclient import SENT

from mailbot.config import LOOPBACK, Imap, Secret, Settings, Smtp
from mailbot.errors import ConfigError, ConnectionStepFailed, ImapLoginFailed, MailbotError, SignInError
from mailbot.transport.imap import keyword_allowed, login as imap_login, open_imap
from mailbot.transport.oauth import Credential, TokenSources
from mailbot.transport.smtp import login as smtp_login, smtp_options

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# The texts the bot sends: each needs a .txt and an .html for each of its languages.
CLIENT_TEMPLATES = ("form_incomplete", "form_complete", "form_missing", "signed_incomplete", "signed_received",
                    "reminder")  # fr and nl
STAFF_TEMPLATES = ("warning", "escalation", "needs_human", "watchdog", "digest")  # in each mailbox's language


class Status(enum.Enum):
    OK = "✓"
    WARN = "!"  # works, but worth knowing (no IDLE: polled); does not fail the check
    FAIL = "✗"
    SKIPPED = "-"  # a prerequisite failed


@dataclass(frozen=True)
class Check:
    """The outcome of one step."""
    status: Status
    label: str  # the step: "resolve", "tcp", "tls", "login", "inbox", ...
    detail: str  # what was found, one sentence naming the host
    todo: str = ""  # what to do about it (on ✗ and !)
    scope: str = ""  # what was checked: "worldline imap", "smtp", "database", "rules", ...
    blocked_by: str = ""  # when skipped: the failed step behind it

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.WARN)

    def line(self) -> str:
        if self.status is Status.SKIPPED:
            return f"{self.status.value} {self.scope}: {self.label} skipped ({self.blocked_by} failed)"
        tail = f" — {self.todo}" if self.todo and self.status in (Status.FAIL, Status.WARN) else ""
        return f"{self.status.value} {self.scope}: {self.detail}{tail}"


def ok(label: str, detail: str) -> Check:
    return Check(Status.OK, label, detail)


def warn(label: str, detail: str, todo: str) -> Check:
    return Check(Status.WARN, label, detail, todo)


def fail(label: str, detail: str, todo: str) -> Check:
    return Check(Status.FAIL, label, detail, todo)


@dataclass(frozen=True)
class Step:
    label: str
    run: Callable[[], Check]
    needs: tuple[str, ...] = ()  # labels of the steps that must have passed first


def run_steps(scope: str, steps: Iterable[Step]) -> Iterator[Check]:
    """Run `steps` in order; one whose prerequisite did not pass is skipped, naming the step that
    failed first (not a cascade of ✗)."""
    done: dict[str, Check] = {}
    for step in steps:
        blocked = next((done[n] for n in step.needs if not done[n].ok), None)
        if blocked is not None:
            check = Check(Status.SKIPPED, step.label, f"{step.label} skipped",
                          blocked_by=blocked.blocked_by or blocked.label)
        else:
            try:
                check = step.run()
            except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others
                check = fail(step.label, f"{step.label}: {type(exc).__name__}: {exc}",
                             "unexpected: please report it with this line")
        done[step.label] = check
        yield replace(check, scope=scope)


# --- steps shared by IMAP and SMTP -----------------------------------------------------------

def check_resolve(host: str, port: int, section: str) -> Check:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return fail("resolve", f"cannot resolve {host}: {exc}",
                    f"check host in [{section}] (and that this machine's DNS answers)")
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return ok("resolve", f"resolve {host} ({', '.join(addresses[:3])})")


def check_tcp(host: str, port: int, timeout: float, section: str, usual: str) -> Check:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
        return fail("tcp", f"cannot connect to {host} port {port}: {reason}",
                    f"check port in [{section}] ({usual}) and that no firewall blocks it from this machine")
    return ok("tcp", f"connect to {host} port {port}")


def _cert_error(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def tls_todo(exc: BaseException, host: str, section: str, usual: str) -> str:
    cert = _cert_error(exc)
    if cert is not None:
        return (f"the certificate of {host} is not trusted here ({cert.verify_message}): the server needs a "
                f"certificate for the name {host!r} from a CA this machine trusts (certificates are always verified)")
    if "STARTTLS" in str(exc).upper() and "SUPPORT" in str(exc).upper():  # not offered by the server
        return f"{host} offers no STARTTLS on this port: use security = \"tls\" with its TLS port"
    return f"check security and port in [{section}] ({usual})"


def describe_tls(sock: ssl.SSLSocket | ssl.SSLObject | None, how: str, host: str, port: int) -> str:
    if sock is None:
        return f"plain text to {host} port {port} (no TLS: allowed to a loopback host only)"
    cert = sock.getpeercert() or {}
    until = cert.get("notAfter")
    valid = f", valid until {dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(until), dt.UTC):%Y-%m-%d}" \
        if isinstance(until, str) else ""
    return f"{how} {sock.version()} with {host}, certificate verified{valid}"


def secret_source(cfg: Secret) -> str:
    if cfg.password_env:
        return f"password_env {cfg.password_env}"
    if cfg.password_file:
        return f"password_file {cfg.password_file}"
    return "password_env or password_file"


# --- an IMAP mailbox -------------------------------------------------------------------------

IMAP_PORTS = "usually 993 with security = \"tls\", 143 with \"starttls\""


class ImapProbe:
    """The steps for one mailbox's IMAP server, on one connection (closed by `close`)."""

    def __init__(self, name: str, cfg: Imap, timeout: float, poll_seconds: float) -> None:
        self.name, self.cfg, self.timeout, self.poll_seconds = name, cfg, timeout, poll_seconds
        self.section = f"mailboxes.{name}.imap"
        self.client: imapclient.IMAPClient | None = None
        self.sent_found = False

    def steps(self) -> list[Step]:
        cfg = self.cfg
        return [
            Step("resolve", lambda: check_resolve(cfg.host, cfg.port, self.section)),
            Step("tcp", lambda: check_tcp(cfg.host, cfg.port, self.timeout, self.section, IMAP_PORTS), ("resolve",)),
            Step("tls", self.tls, ("tcp",)),
            Step("login", self.login, ("tls",)),
            Step("inbox", lambda: self.folder("inbox", cfg.inbox), ("login",)),
            Step("sent", lambda: self.folder("sent", cfg.sent), ("login",)),
            Step("keyword", self.keyword, ("inbox",)),
            Step("idle", self.idle, ("login",)),
        ]

    def tls(self) -> Check:
        cfg = self.cfg
        try:
            self.client = open_imap(cfg, self.timeout)
        except ConnectionStepFailed as exc:
            return fail("tls", str(exc), tls_todo(exc, cfg.host, self.section, IMAP_PORTS))
        except (IMAPClientError, OSError) as exc:  # no IMAP greeting: another service on this port
            return fail("tls", f"no IMAP greeting from {cfg.host} port {cfg.port}: {type(exc).__name__}: {exc}",
                        f"check port in [{self.section}] ({IMAP_PORTS})")
        sock = self.client.socket()
        how = {"tls": "TLS", "starttls": "STARTTLS,"}.get(cfg.security, "")
        return ok("tls", describe_tls(sock if isinstance(sock, ssl.SSLSocket) else None, how, cfg.host, cfg.port))

    def login(self) -> Check:
        cfg = self.cfg
        try:
            password = TokenSources().credential(cfg, self.section, cfg.host)
        except ConfigError as exc:
            return fail("login", str(exc), f"set {secret_source(cfg)} where mailbot runs")
        try:
            imap_login(self.client, cfg, password)
        except SignInError as exc:
            return fail("login", str(exc),
                        f"check the oauth2 section of [{self.section}] (see README, Signing in with OAuth2)")
        except ImapLoginFailed as exc:
            return fail("login", str(exc), f"check user {cfg.user!r} and {secret_source(cfg)}")
        return ok("login", f"logged in to {cfg.host} as {cfg.user}")

    def folder(self, label: str, folder: str) -> Check:
        assert self.client is not None  # after the tls step
        if self.client.folder_exists(folder):
            self.sent_found = self.sent_found or label == "sent"
            return ok(label, f"folder {folder!r} found")
        names = [name for _flags, _sep, name in self.client.list_folders()]
        hint = f"one of {', '.join(repr(n) for n in names[:12])}"
        if label == "sent":
            special = self.client.find_special_folder(SENT)
            if special:
                hint = f"{special!r}, the folder {self.cfg.host} marks as \\Sent"
        return fail(label, f"no folder {folder!r} on {self.cfg.host}", f"set {label} in [{self.section}] to {hint}")

    def keyword(self) -> Check:
        folders = [self.cfg.inbox] + ([self.cfg.sent] if self.sent_found and self.cfg.sent != self.cfg.inbox else [])
        assert self.client is not None  # after the tls step
        # SELECT, not EXAMINE: a read-only folder lists no PERMANENTFLAGS at all. Nothing is changed
        # (never CLOSE, which would expunge mail a person marked \Deleted; LOGOUT does not).
        flags = {f: tuple(self.client.select_folder(f).get(b"PERMANENTFLAGS", ())) for f in folders}
        return keyword_verdict(flags, self.cfg.keyword, self.cfg.move_to, self.client.has_capability("MOVE"),
                               self.cfg.host, self.section)

    def idle(self) -> Check:
        assert self.client is not None  # after the tls step
        if self.client.has_capability("IDLE"):
            return ok("idle", f"IDLE offered by {self.cfg.host}: new mail is seen as it comes")
        return warn("idle", f"{self.cfg.host} offers no IDLE",
                    f"new mail is polled every {self.poll_seconds:g} s (daemon.poll_seconds)")

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            try:
                client.logout()
            except Exception:  # noqa: BLE001 - not logged in, or the connection is gone
                try:
                    client.shutdown()
                except Exception:  # noqa: BLE001, S110 - closing what is already broken
                    pass


def keyword_verdict(flags: dict[str, tuple[bytes, ...]], keyword: str, move_to: str | None, has_move: bool,
                    host: str, section: str) -> Check:
    """Whether the bot can mark processed mail: its keyword kept in every watched folder (by
    PERMANENTFLAGS, as the daemon decides), or else `move_to` with the server's MOVE."""
    refused = {f: got for f, got in flags.items() if not keyword_allowed({b"PERMANENTFLAGS": got}, keyword)}
    where = " and ".join(repr(f) for f in flags)
    if not refused:
        return ok("keyword", f"custom keyword {keyword} allowed in {where}")
    folder, got = next(iter(refused.items()))
    shown = " ".join(f.decode(errors="replace") for f in got) or "none"
    if move_to and has_move:
        return ok("keyword", f"{host} keeps no custom keyword in {folder!r} (PERMANENTFLAGS: {shown}): "
                             f"processed mail is moved to {move_to!r}")
    if move_to:
        return fail("keyword", f"{host} keeps no custom keyword in {folder!r} and offers no MOVE",
                    "mailbot cannot mark processed mail on this server: ask for a server with keywords or MOVE")
    return fail("keyword", f"{host} keeps no custom keyword in {folder!r} (PERMANENTFLAGS: {shown})",
                f"set move_to = \"Processed\" in [{section}]: processed mail is then moved there")


# --- the SMTP server ---------------------------------------------------------------------------

SMTP_PORTS = "usually 587 with security = \"starttls\", 465 with \"tls\""


def may_send_to(host: str) -> bool:
    """Under pytest a test mail goes to a loopback server only: tests never write to the world."""
    return "PYTEST_CURRENT_TEST" not in os.environ or host in LOOPBACK


class SmtpProbe:
    """The steps for the SMTP server; each opens its own connection, as the outbox sender does."""

    def __init__(self, cfg: Smtp, sender: str, timeout: float, send_to: str | None = None) -> None:
        self.cfg, self.sender, self.timeout, self.send_to = cfg, sender, timeout, send_to
        self.password: Credential | None = None

    def steps(self) -> list[Step]:
        cfg = self.cfg
        steps = [
            Step("resolve", lambda: check_resolve(cfg.host, cfg.port, "smtp")),
            Step("tcp", lambda: check_tcp(cfg.host, cfg.port, self.timeout, "smtp", SMTP_PORTS), ("resolve",)),
            Step("tls", lambda: asyncio.run(self.tls()), ("tcp",)),
            Step("login", lambda: asyncio.run(self.login()), ("tls",)),
        ]
        if self.send_to:
            steps.append(Step("send", lambda: asyncio.run(self.send()), ("login",)))
        return steps

    def _options(self) -> dict:
        return smtp_options(self.cfg) | {"timeout": self.timeout}

    async def _connect(self, with_login: bool) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(**self._options())
        await smtp.connect()
        if with_login:
            await smtp_login(smtp, self.cfg, self.password)  # as the outbox sender's connection does
        return smtp

    async def tls(self) -> Check:
        cfg = self.cfg
        smtp = aiosmtplib.SMTP(**self._options())
        try:
            await smtp.connect()
            ssl_object = smtp.get_transport_info("ssl_object")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return fail("tls", f"TLS with {cfg.host} failed: {exc}", tls_todo(exc, cfg.host, "smtp", SMTP_PORTS))
        finally:
            await _quit(smtp)
        how = {"tls": "TLS", "starttls": "STARTTLS,"}.get(cfg.security, "")
        return ok("tls", describe_tls(ssl_object, how, cfg.host, cfg.port))

    async def login(self) -> Check:
        cfg = self.cfg
        if not cfg.user:
            return ok("login", f"no login (smtp.user unset): {cfg.host} must take mail from this machine as it is")
        try:
            self.password = TokenSources().credential(cfg, "smtp", cfg.host)
        except ConfigError as exc:
            return fail("login", str(exc), f"set {secret_source(cfg)} where mailbot runs")
        smtp = aiosmtplib.SMTP(**self._options())
        try:
            await smtp.connect()
            await smtp_login(smtp, cfg, self.password)  # as the outbox sender's connection does
        except SignInError as exc:
            return fail("login", str(exc), "check the oauth2 section of [smtp] (see README, Signing in with OAuth2)")
        except aiosmtplib.SMTPAuthenticationError as exc:
            return fail("login", f"login refused by {cfg.host}: {exc.code} {exc.message}",
                        f"check user {cfg.user!r} and {secret_source(cfg)}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            return fail("login", f"login on {cfg.host} failed: {exc}",
                        "the server may offer AUTH only over TLS: check security in [smtp]")
        finally:
            await _quit(smtp)
        return ok("login", f"logged in to {cfg.host} as {cfg.user} (nothing sent)")

    async def send(self) -> Check:
        cfg, to = self.cfg, self.send_to
        assert to is not None  # a step only with --send-test
        if not may_send_to(cfg.host):
            return fail("send", f"test mail to {to} not sent: {cfg.host} is not a loopback server",
                        "under tests mail goes to 127.0.0.1 only")
        try:
            smtp = await self._connect(with_login=bool(cfg.user))
        except (aiosmtplib.SMTPException, OSError, SignInError) as exc:
            return fail("send", f"test mail to {to} not sent: {cfg.host}: {exc}",
                        "run mailbot doctor without --send-test first")
        try:
            refused, answer = await smtp.send_message(test_mail(self.sender, to))
        except (aiosmtplib.SMTPException, OSError) as exc:
            return fail("send", f"test mail to {to} refused by {cfg.host}: {exc}",
                        "the server's answer says why (sender address not allowed for this login, recipient refused)")
        finally:
            await _quit(smtp)
        if refused:
            return fail("send", f"test mail to {to} refused by {cfg.host}: {refused}", "check the address")
        return ok("send", f"test mail sent from {self.sender} to {to} ({answer})")


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        try:
            await asyncio.wait_for(smtp.quit(), timeout=5)
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            smtp.close()


def test_mail(sender: str, to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"] = sender, to
    mail["Subject"] = "mailbot doctor: test mail"
    mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mail["Message-ID"] = make_msgid("doctor", domain=sender.partition("@")[2] or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-reply to it
    mail["X-Mailbot-Purpose"] = "doctor-test"
    mail.set_content("This mail was sent by `mailbot doctor --send-test` to check the SMTP settings.\n"
                     "Nothing to do.\n")
    return mail


# --- the database ------------------------------------------------------------------------------

class DatabaseProbe:
    """Reachable, and at which migration: read-only (a missing SQLite file is not created)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine | None = None
        self.shown = url.split("@")[-1]  # no password of a server URL

    def steps(self) -> list[Step]:
        return [Step("reachable", self.reachable), Step("migrations", self.migrations, ("reachable",))]

    def reachable(self) -> Check:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        path = Path(self.url.removeprefix("sqlite:///")) if self.url.startswith("sqlite:///") else None
        if path is not None and not path.exists():
            parent = next((p for p in path.parents if p.exists()), Path("/"))
            if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
                return ok("reachable", f"no database yet at {path}: created at the first start")
            return fail("reachable", f"the database {path} cannot be created ({parent} is not a writable folder)",
                        "set url in [database] to a file in a folder the service user may write")
        if path is not None and not (os.access(path, os.R_OK | os.W_OK) and os.access(path.parent, os.W_OK)):
            return fail("reachable", f"the database {path} is not writable here (it and its folder must be)",
                        "run as the service user, or fix the owner of the file and its folder")
        try:
            engine = create_engine(self.url)
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            cause = getattr(exc, "orig", None) or exc
            return fail("reachable", f"the database {self.shown} cannot be opened: {type(cause).__name__}: {cause}",
                        "check url in [database] (and that the database server runs)")
        self.engine = engine
        return ok("reachable", f"database {self.shown} opened")

    def migrations(self) -> Check:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory
        from alembic.script.revision import RevisionError
        from alembic.util.exc import CommandError

        from mailbot.store.db import alembic_config

        if self.engine is None:
            return ok("migrations", "the migrations run at the first start")
        script = ScriptDirectory.from_config(alembic_config(self.url))
        heads = tuple(script.get_heads())
        with self.engine.connect() as connection:
            current = tuple(MigrationContext.configure(connection).get_current_heads())
        self.engine.dispose()
        if set(current) == set(heads):
            return ok("migrations", f"schema at the newest migration ({', '.join(heads)})")
        if not current:
            return ok("migrations", "no migration applied yet: they run at the first start")
        try:
            pending = list(script.iterate_revisions(heads, current))
        except (CommandError, RevisionError):
            return fail("migrations", f"the database is at migration {', '.join(current)}, which this mailbot "
                                      "does not have",
                        "a newer mailbot wrote it, or a file is missing from mailbot/store/migrations/versions: "
                        "run that version, or restore the file")
        return warn("migrations", f"the database is at migration {', '.join(current)}: {len(pending)} newer "
                                  "migration(s) run at the next start",
                    "back the database up before that start")


# --- rules and templates -------------------------------------------------------------------------

def check_rules_file(label: str, path: Path | None, load: Callable[[Path | None], object]) -> Check:
    try:
        load(path)
    except MailbotError as exc:
        return fail(label, f"{label} rules: {exc}",
                    f"fix {path.name if path else 'the file'} at the place named (or restore it)")
    return ok(label, f"{label} rules {path} read")


def check_calendars(settings: Settings) -> Check:
    from mailbot.calendar import load_calendars

    path = settings.files.calendars
    try:
        calendars = load_calendars(path)
    except MailbotError as exc:
        return fail("calendars", f"calendars: {exc}",
                    f"fix {path.name if path else 'the file'} at the place named (or restore it)")
    used = {"schedule.calendar": settings.schedule.calendar,
            "deadlines.prevalidation.calendar": settings.deadlines.prevalidation.calendar,
            "deadlines.encoding.calendar": settings.deadlines.encoding.calendar}
    unknown = [f"{key} = {name!r}" for key, name in used.items() if name not in calendars]
    if unknown:
        return fail("calendars", f"no such calendar in {path}: {', '.join(unknown)}",
                    f"use one of {', '.join(sorted(calendars))}")
    return ok("calendars", f"calendars {path} read ({', '.join(sorted(calendars))})")


def check_languages(path) -> Check:
    from mailbot.answers.language import load_language_words

    try:
        load_language_words(path)
    except MailbotError as exc:
        return fail("languages", f"language words: {exc}", "fix the file at the place named (or restore it)")
    return ok("languages", "language words read")


def rules_steps(settings: Settings) -> list[Step]:
    from mailbot.answers.reasons import load_reasons
    from mailbot.forms import load_rules
    from mailbot.mail.documents import load_document_rules
    from mailbot.mail.forwards import load_forward_rules
    from mailbot.mail.robots import load_robot_rules
    from mailbot.mail.subject import load_subject_rules

    files = settings.files
    return [
        Step("form", lambda: check_rules_file("order form", files.form_rules, load_rules)),
        Step("subject", lambda: check_rules_file("subject", files.subject_rules, load_subject_rules)),
        Step("document", lambda: check_rules_file("document", files.document_rules, load_document_rules)),
        Step("robot", lambda: check_rules_file("robot", files.robot_rules, load_robot_rules)),
        Step("calendars", lambda: check_calendars(settings)),
        Step("languages", lambda: check_languages(files.languages)),
        Step("reasons", lambda: check_rules_file("reasons", files.reasons, load_reasons)),
        Step("forwards", lambda: check_rules_file("forward", files.forward_rules, load_forward_rules)),
    ]


def needed_templates(settings: Settings) -> list[str]:
    staff = sorted({box.language for box in settings.mailboxes.values()})
    pairs = [(p, lang) for p in CLIENT_TEMPLATES for lang in ("fr", "nl")] + \
        [(p, lang) for p in STAFF_TEMPLATES for lang in staff]
    return [f"{purpose}.{lang}.{ext}" for purpose, lang in pairs for ext in ("txt", "html")]


def check_templates(settings: Settings) -> Check:
    """Every template the bot sends exists and compiles, with the templates it includes."""
    from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, meta

    from mailbot.answers import render

    env = render.Renderer.for_settings(settings).env
    names = needed_templates(settings)
    problems: list[str] = []
    seen: set[str] = set()
    queue = list(names)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        try:
            assert env.loader is not None  # the Renderer's
            source = env.loader.get_source(env, name)[0]
            env.get_template(name)
            queue += [ref for ref in meta.find_referenced_templates(env.parse(source)) if ref]
        except TemplateNotFound as exc:
            problems.append(f"{exc.name} missing")
        except TemplateSyntaxError as exc:
            problems.append(f"{exc.name or name} line {exc.lineno}: {exc.message}")
        except TemplateError as exc:
            problems.append(f"{name}: {exc}")
    folder = ", ".join(getattr(env.loader, "searchpath", [])) or "templates/"
    if problems:
        return fail("templates", f"templates in {folder}: {'; '.join(problems)}",
                    "restore or fix these files (every text needs its .txt and .html for each language)")
    return ok("templates", f"{len(names)} templates in {folder} found and compiled")


# --- the whole -------------------------------------------------------------------------------

def diagnose(settings: Settings, timeout: float = 10.0, send_to: str | None = None) -> Iterator[Check]:
    """Every check, in order, as it is made (a slow server shows which step it is at)."""
    for name, box in settings.mailboxes.items():
        if box.imap is None:
            yield Check(Status.WARN, "imap", "no [imap] section: `mailbot run` does not read this mailbox",
                        f"add [mailboxes.{name}.imap] (see config.example.toml)", f"{name} imap")
            continue
        probe = ImapProbe(name, box.imap, timeout, settings.daemon.poll_seconds)
        try:
            yield from run_steps(f"{name} imap", probe.steps())
        finally:
            probe.close()
    if settings.smtp is None:
        yield Check(Status.FAIL, "smtp", "no [smtp] section", "`mailbot run` needs one (see config.example.toml)",
                    "smtp")
    else:
        sender = settings.mailboxes[settings.answers.from_mailbox].address
        yield from run_steps("smtp", SmtpProbe(settings.smtp, sender, timeout, send_to).steps())
    yield from run_steps("database", DatabaseProbe(settings.database.url).steps())
    yield from run_steps("rules", rules_steps(settings))
    yield from run_steps("templates", [Step("templates", lambda: check_templates(settings))])


def lines(checks: Iterable[Check]) -> Iterator[str]:
    """One line per check, as they come; the steps of one server skipped for the same failure
    share one line ("- bosa imap: tcp, tls, login skipped (resolve failed)")."""
    held: list[Check] = []

    def flush() -> Iterator[str]:
        if held:
            yield replace(held[0], label=", ".join(c.label for c in held)).line()
            held.clear()

    for check in checks:
        if held and ((check.status, check.scope, check.blocked_by)
                     != (Status.SKIPPED, held[0].scope, held[0].blocked_by)):
            yield from flush()
        if check.status is Status.SKIPPED:
            held.append(check)
        else:
            yield check.line()
    yield from flush()


def summary(checks: list[Check]) -> str:
    count = {status: sum(c.status is status for c in checks) for status in Status}
    parts = [f"{count[Status.OK]} ✓", f"{count[Status.FAIL]} ✗"]
    parts += [f"{count[Status.WARN]} !"] if count[Status.WARN] else []
    parts += [f"{count[Status.SKIPPED]} skipped"] if count[Status.SKIPPED] else []
    verdict = "not ready: fix the ✗ lines, then run mailbot doctor again" if count[Status.FAIL] \
        else "ready to go live"
    return f"{', '.join(parts)}: {verdict}"
