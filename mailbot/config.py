"""The configuration: a TOML file read into typed, validated settings, passed in explicitly.

Every key has a default (see config.example.toml); a mistake is reported as one sentence
naming the key. A relative path in the file is taken from the file's own folder, wherever
mailbot is started from (a service's working directory is not the administrator's).
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import json
import os
import re
import stat
import types
import typing
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mailbot.errors import ConfigError
from mailbot.tomlfile import read_toml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _email(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


LOOPBACK = ("127.0.0.1", "::1", "localhost")


# $NAME or ${NAME} in a secret file's path (_secret_file)
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a file holding a secret, refused when other users may read or change it
    (a password readable by anyone on the machine is no secret). Every secret file goes through here."""
    if unset := VARIABLE.search(str(path)):
        raise ConfigError(f"{what}: the secret file {path} names ${unset.group(1) or unset.group(2)}, which is not set "
                          "(systemd sets $CREDENTIALS_DIRECTORY for a service with LoadCredential=; README, Running "
                          "as a service, shows how to run a command so)")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read the secret file {path} ({exc.strerror})") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what}: the secret file {path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
                          f"run: chmod 600 {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(f"{what}: cannot read the secret file {path}") from exc


def _from_folder(value: Path | None, info: ValidationInfo) -> Path | None:
    """A relative path from the configuration file's folder (`folder` in the validation context);
    settings built in code, with no file, keep theirs as given."""
    if value is None:
        return None
    value = value.expanduser()
    folder = (info.context or {}).get("folder")
    return value if value.is_absolute() or folder is None else folder / value


def _secret_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """A secret file's path: each $NAME or ${NAME} is that environment variable (a service's
    credentials are in ${CREDENTIALS_DIRECTORY}, systemd's LoadCredential=), then relative from
    the configuration file's folder. A variable not set here stays as written, and only reading
    the file says so: commands that need no secret (status, digest) work all the same."""
    if value is None:
        return None
    text = VARIABLE.sub(lambda m: os.environ.get(m.group(1) or m.group(2), m.group(0)), str(value))
    return Path(text) if VARIABLE.search(text) else _from_folder(Path(text), info)


def read_secret(env: str | None, file: Path | None, what: str, name: str = "password") -> str | None:
    """A secret from the environment variable `env` or the first line of `file`; None when
    neither is set. Never from the configuration file itself."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{what}: the environment variable {env} is not set")
        return value
    if file:
        return read_secret_file(file, what)
    return None


class Secret(_Strict):
    """Where a password comes from: never the configuration file itself."""
    password_env: str | None = None  # the name of an environment variable
    password_file: Path | None = None  # a file holding the password (first line)

    _password_file_from_folder = field_validator("password_file")(lambda cls, v, info: _secret_file(v, info))

    def password(self, what: str) -> str:
        value = read_secret(self.password_env, self.password_file, what)
        if value is None:
            raise ConfigError(f"{what}: set password_env or password_file")
        return value


MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"


def _https(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{where} must be an https:// address, not {url!r}")
    return url.rstrip("/")


class OAuth2(_Strict):
    """How the bot gets OAuth2 access tokens for a mailbox or the sender.

    "microsoft": Microsoft 365 (Entra ID), client-credentials grant through MSAL, with the
    application permissions IMAP.AccessAsApp / SMTP.SendAsApp (see README). "generic": any
    OAuth2 token endpoint (Google and others), refresh-token grant when a refresh token is
    configured, else client credentials. Identical sections share one token source.
    """
    provider: str = Field(pattern="^(microsoft|generic)$")
    client_id: str
    # The client secret, from an environment variable or a file (first line) ...
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    # ... or a certificate: a PEM file with the private key and the certificate (Microsoft
    # also takes a .pfx without passphrase). Generic providers get it as private_key_jwt.
    certificate_file: Path | None = None
    # microsoft
    tenant: str | None = None  # the directory (tenant) ID or a verified domain
    authority: str | None = None  # default https://login.microsoftonline.com/<tenant>
    # generic
    token_url: str | None = None
    refresh_token_env: str | None = None
    refresh_token_file: Path | None = None
    scope: str | None = None  # microsoft: https://outlook.office365.com/.default
    # A token is renewed this long before it expires (at most half its lifetime).
    renew_before_seconds: float = Field(default=300, ge=0)
    # After the provider refused the credentials it is asked again after this long, then
    # twice as long each time, up to an hour: a wrong secret never makes a tight loop.
    retry_seconds: float = Field(default=60, gt=0)
    # A CA bundle for the token endpoint's certificate (default: the usual trusted roots).
    ca_file: Path | None = None

    _files_from_folder = field_validator("client_secret_file", "certificate_file", "refresh_token_file", "ca_file")(
        lambda cls, v, info: _secret_file(v, info))

    @model_validator(mode="after")
    def _complete(self) -> OAuth2:
        if self.client_secret_env and self.client_secret_file:
            raise ValueError("oauth2: set client_secret_env or client_secret_file, not both")
        has_secret = bool(self.client_secret_env or self.client_secret_file)
        if has_secret and self.certificate_file:
            raise ValueError("oauth2: set a client secret or certificate_file, not both")
        if self.provider == "microsoft":
            if not (self.tenant or self.authority):
                raise ValueError("oauth2: provider 'microsoft' needs tenant (the directory ID or domain)")
            if not (has_secret or self.certificate_file):
                raise ValueError("oauth2: provider 'microsoft' needs client_secret_env, client_secret_file "
                                 "or certificate_file")
            if self.token_url or self.refresh_token_env or self.refresh_token_file:
                raise ValueError("oauth2: token_url and refresh_token_* are for provider 'generic'")
            if self.authority:
                _https(self.authority, "oauth2.authority")
        else:
            if not self.token_url:
                raise ValueError("oauth2: provider 'generic' needs token_url")
            _https(self.token_url, "oauth2.token_url")
            if not self.scope:
                raise ValueError("oauth2: provider 'generic' needs scope (Google: https://mail.google.com/)")
            if self.refresh_token_env and self.refresh_token_file:
                raise ValueError("oauth2: set refresh_token_env or refresh_token_file, not both")
            refresh = bool(self.refresh_token_env or self.refresh_token_file)
            if not refresh and not (has_secret or self.certificate_file):
                raise ValueError("oauth2: the client-credentials grant needs a client secret or certificate_file")
            if self.tenant or self.authority:
                raise ValueError("oauth2: tenant and authority are for provider 'microsoft'")
        return self

    @property
    def token_scope(self) -> str:
        return self.scope or "https://outlook.office365.com/.default"

    @property
    def authority_url(self) -> str:
        return (self.authority or f"{MICROSOFT_AUTHORITY}/{self.tenant}").rstrip("/")

    def client_secret(self, what: str) -> str | None:
        return read_secret(self.client_secret_env, self.client_secret_file, what, "client secret")

    def refresh_token(self, what: str) -> str | None:
        return read_secret(self.refresh_token_env, self.refresh_token_file, what, "refresh token")


class Login(Secret):
    """How the bot signs in: a password, or an OAuth2 access token (XOAUTH2/OAUTHBEARER)."""
    auth: str = Field(default="password", pattern="^(password|oauth2)$")
    oauth2: OAuth2 | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> Login:
        if self.auth == "oauth2":
            if self.oauth2 is None:
                raise ValueError('auth = "oauth2" needs an oauth2 section (see config.example.toml)')
            if self.password_env or self.password_file:
                raise ValueError('password_env and password_file are for auth = "password"; '
                                 "with oauth2 the secrets are in the oauth2 section")
        elif self.oauth2 is not None:
            raise ValueError('an oauth2 section is set but auth is "password": set auth = "oauth2"')
        return self


def _security(host: str, security: str, where: str) -> None:
    if security == "plain" and host not in LOOPBACK:
        raise ValueError(f"{where}: security 'plain' is allowed only to a loopback host, not {host!r}")


class Imap(Login):
    host: str
    port: int = 993
    user: str
    security: str = Field(default="tls", pattern="^(tls|starttls|plain)$")
    inbox: str = "INBOX"
    sent: str = "Sent"  # where staff replies (and the bot's own sent mail) are
    keyword: str = "$MailbotDone"  # set on processed mail where the server allows keywords
    move_to: str | None = None  # else processed mail is moved here (keywords not allowed)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> Imap:
        _security(self.host, self.security, "imap")
        return self


class Smtp(Login):
    host: str
    port: int = 587
    user: str | None = None  # no AUTH when absent
    security: str = Field(default="starttls", pattern="^(tls|starttls|plain)$")
    # Exchange and Microsoft 365 keep a copy of what is sent in the Sent folder; other servers
    # do not, and the bot then appends its copy there itself.
    saves_to_sent: bool = False

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> Smtp:
        _security(self.host, self.security, "smtp")
        if self.auth == "oauth2" and not self.user:
            raise ValueError('smtp: auth = "oauth2" needs user (the mailbox the bot sends as)')
        return self


class SenderAuthentication(_Strict):
    """Which receiving server's Authentication-Results to believe (mailbot.mail.authn).

    A mail is from its From address only with an aligned DMARC (or DKIM) pass stamped by one of
    these servers; with none configured, or no header from them, the sender is unauthenticated.
    """
    authserv_ids: tuple[str, ...] = ()  # e.g. ("mx.google.com",): headers carrying these ids
    # Exchange Online writes its header with no authserv-id: believe the topmost one, if it
    # sits above the Received header of the mail's entry (by a host under `entry_hosts`).
    trust_topmost_without_id: bool = False
    entry_hosts: tuple[str, ...] = ()  # e.g. ("protection.outlook.com",)
    # No header from these servers: "unauthenticated" (safe) or "believe_from" (anyone can forge).
    unstamped: str = Field(default="unauthenticated", pattern="^(unauthenticated|believe_from)$")

    @field_validator("authserv_ids", "entry_hosts")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(v.strip().lower().rstrip(".") for v in value)
        if any(not v or any(c.isspace() or c in ";=()" for c in v) for v in out):
            raise ValueError("each entry is one host or domain name")
        return out

    @model_validator(mode="after")
    def _domains_for_topmost(self) -> SenderAuthentication:
        if self.trust_topmost_without_id and not self.entry_hosts:
            raise ValueError("trust_topmost_without_id needs entry_hosts (the domain of the provider's "
                             "servers that take mail in, e.g. [\"protection.outlook.com\"])")
        return self


class Mailbox(_Strict):
    address: str
    imap: Imap | None = None  # needed by `mailbot run`, not by replay
    # Staff who write from their own address rather than the shared mailbox.
    staff: tuple[str, ...] = ()
    language: str = Field(default="fr", pattern="^(fr|nl|en)$")  # of the texts to its staff: notes, digest
    authentication: SenderAuthentication = SenderAuthentication()

    _check_address = field_validator("address")(lambda cls, v: _email(v))
    _check_staff = field_validator("staff")(lambda cls, v: tuple(_email(a) for a in v))


class Deadline(_Strict):
    days: int = Field(gt=0)
    calendar: str = "public"
    party: str = "worldline"  # the mailbox whose staff must act


class Deadlines(_Strict):
    prevalidation: Deadline = Deadline(days=3)
    encoding: Deadline = Deadline(days=6)


class Process(_Strict):
    # Prefix of the dossier references the bot puts in its subjects: [EPAY-2026-0042].
    reference_prefix: str = "EPAY"
    # The clock of the process (an IANA name): the day a mail came, when a deadline passes,
    # when the jobs run, the times shown to staff. The business-day calendars stay Belgian.
    timezone: str = "Europe/Brussels"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name such as \"Europe/Brussels\"") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Schedule(_Strict):
    """When the sweeps and digests run: on business days of `calendar`, in process.timezone."""
    calendar: str = "public"
    sweep_times: tuple[dt.time, ...] = (dt.time(9, 0), dt.time(11, 0), dt.time(14, 0), dt.time(16, 0))
    digest_time: dt.time = dt.time(8, 30)


class Answers(_Strict):
    from_mailbox: str = "worldline"  # the watched mailbox the bot writes from
    reminder_days: int = Field(default=5, gt=0)  # business days a client may owe a document
    per_purpose_per_day: int = Field(default=1, gt=0)  # per address and dossier (RFC 3834)
    per_address_per_day: int = Field(default=10, gt=0)
    max_reminders: int = Field(default=3, gt=0)  # per owed document; then the dossier is dormant
    max_new_dossiers_per_sender_per_day: int = Field(default=3, gt=0)
    notes_per_dossier_per_day: int = Field(default=1, gt=0)  # notes to staff; the rest in the digest
    notes_per_sender_per_day: int = Field(default=1, gt=0)  # on mail in no dossier, per sender
    notes_outside_dossiers_per_day: int = Field(default=20, gt=0)  # on mail in no dossier, in all
    shadow: bool = False  # read, file and keep deadlines, but send nothing to clients


class Daemon(_Strict):
    max_attempts: int = Field(default=3, gt=0)  # a mail failing this often is quarantined
    idle_minutes: float = Field(default=25, gt=0, le=29)  # IDLE is re-issued before 29 minutes (RFC 2177)
    # An IMAP server silent this long (no greeting, no answer to DONE or a command) is taken as
    # gone: with idle_minutes, how soon a connection dead without a FIN or RST is replaced.
    imap_timeout_seconds: float = Field(default=30, gt=0)
    poll_seconds: float = Field(default=60, gt=0)  # when the server has no IDLE
    backoff_max_seconds: float = Field(default=300, gt=0)  # reconnect backoff ceiling (with jitter)
    watchdog_minutes: float = Field(default=15, gt=0)  # a mailbox silent this long is reported once
    send_retry_max_seconds: float = Field(default=900, gt=0)  # outbox retry backoff ceiling
    # Processes that read every mail (parsing, the form checker, PDF text) apart from the
    # daemon, one kept warm: at least 1, so that no attachment is ever read on the database
    # thread or without bounds (mailbot/readers.py).
    readers: int = Field(default=1, ge=1, le=8)
    # Per mail, in the reader process: past this many seconds, or past this much memory (the
    # reader's address space, ~200 MB of it the interpreter and libraries), the mail is set
    # aside with the reason (quarantine) and the reader replaced; the bot goes on.
    read_timeout_seconds: float = Field(default=60, gt=0)
    read_memory_mb: int = Field(default=1024, ge=256)
    # The SMTP connection (and the sent folder's) stays open for the next mail; closed after
    # this long without one.
    smtp_idle_seconds: float = Field(default=5, gt=0)
    # Mail that reached the mailboxes before this moment (IMAP INTERNALDATE) is history: filed,
    # never answered (mailbot/history.py). Unset: the daemon's first start on its database.
    history_before: dt.datetime | None = None

    @field_validator("history_before")
    @classmethod
    def _with_offset(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time with its offset, e.g. 2027-01-01T00:00+01:00")
        return value


class Retention(_Strict):
    """When the personal data of old dossiers is purged (mailbot/retention.py); references,
    dates, kinds and events stay."""
    months_after_close: int = Field(default=12, gt=0)  # production access sent, no deadline running
    months_dormant: int = Field(default=18, gt=0)  # any dossier without a mail for this long
    months_outside_dossiers: int = Field(default=6, gt=0)  # mail in no dossier, digests, staff notes
    time: dt.time = dt.time(2, 30)  # every day, in process.timezone


class Files(_Strict):
    """Rules and texts staff may change, in place of those shipped in the package (mailbot/rules/,
    mailbot/templates/); unset, the shipped ones."""
    form_rules: Path | None = None  # the order form's fields, checks and messages
    subject_rules: Path | None = None
    document_rules: Path | None = None
    robot_rules: Path | None = None
    calendars: Path | None = None
    languages: Path | None = None  # words that tell a body's language
    reasons: Path | None = None  # why a person is needed, in each staff language
    forward_rules: Path | None = None  # how a client's mail forwarded by staff is read
    templates: Path | None = None  # a folder: a template there replaces the shipped one of its name

    @field_validator("*")
    @classmethod
    def _paths_from_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _from_folder(value, info)


class Database(_Strict):
    # Validated even when left out, so that the default too is taken from the file's folder.
    url: str = Field(default="sqlite:///data/mailbot.sqlite", validate_default=True)

    @field_validator("url")
    @classmethod
    def _sqlite_from_folder(cls, value: str, info: ValidationInfo) -> str:
        path = value.removeprefix("sqlite:///")
        if value.startswith("sqlite:///") and path and not path.startswith(("/", ":memory:")):
            return f"sqlite:///{_from_folder(Path(path), info)}"
        return value


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Oidc(_Strict):
    """Sign-in to the staff page through the organisation's OpenID Connect provider (Microsoft
    Entra ID: https://login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration)."""
    metadata_url: str  # the provider's discovery document
    client_id: str
    client_secret_env: str | None = None
    client_secret_file: Path | None = None
    scope: str = "openid email profile"
    # The claim that holds the staff member's address: "email", or Entra ID's "preferred_username".
    email_claim: str = "email"

    _secret_from_folder = field_validator("client_secret_file")(lambda cls, v, info: _secret_file(v, info))

    @field_validator("metadata_url")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
            return value  # a provider on this machine (the tests)
        return _https(value, "web.oidc.metadata_url")

    def client_secret(self) -> str:
        value = read_secret(self.client_secret_env, self.client_secret_file, "web.oidc", "client secret")
        if value is None:
            raise ConfigError("web.oidc: set client_secret_env or client_secret_file")
        return value


class Web(_Strict):
    """The staff page (`mailbot web`, and `mailbot run` when `serve` is true): where it listens,
    its public address behind the reverse proxy, who may sign in and how."""
    serve: bool = False  # `mailbot run` serves it beside the daemon
    host: str = "127.0.0.1"  # loopback: meant to sit behind the organisation's reverse proxy
    port: int = Field(default=8025, ge=0, le=65535)
    # The address staff reach it at (https://mailbot.example.org): the digest links each dossier
    # to its page, and the session cookie is sent over https only.
    public_url: str | None = None
    sign_in: str = Field(default="oidc", pattern="^(oidc|demo)$")  # demo: the sandbox's local demo user
    demo_user: str = "demo.staff@worldline.localhost"
    session_secret_env: str | None = None  # signs the session cookie; unset: a new one each start
    session_secret_file: Path | None = None
    session_hours: float = Field(default=10.0, gt=0)
    oidc: Oidc | None = None
    # Who may sign in, per team (worldline, bosa); a team not named here: its mailbox's staff list.
    staff: dict[str, tuple[str, ...]] = {}

    _secret_from_folder = field_validator("session_secret_file")(lambda cls, v, info: _secret_file(v, info))
    _check_staff = field_validator("staff")(lambda cls, v: {k: tuple(_email(a) for a in x) for k, x in v.items()})
    _check_demo_user = field_validator("demo_user")(lambda cls, v: _email(v))

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"web.public_url must be an http(s):// address, not {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _sign_in(self) -> Web:
        if self.sign_in == "oidc" and self.oidc is None and self.serve:
            raise ValueError("web: sign_in = \"oidc\" needs a [web.oidc] section")
        if self.sign_in == "demo" and (not _loopback(self.host) or self.public_url):
            raise ValueError("web: the demo sign-in is for the sandbox: loopback only (host = \"127.0.0.1\", "
                             "no public_url)")
        return self

    def session_secret(self) -> str | None:
        return read_secret(self.session_secret_env, self.session_secret_file, "web", "session secret")


class Settings(_Strict):
    mailboxes: dict[str, Mailbox]
    database: Database = Field(default={}, validate_default=True)  # its url from the file's folder too
    deadlines: Deadlines = Deadlines()
    process: Process = Process()
    schedule: Schedule = Schedule()
    answers: Answers = Answers()
    smtp: Smtp | None = None  # needed by `mailbot run`
    daemon: Daemon = Daemon()
    files: Files = Files()
    retention: Retention = Retention()
    web: Web = Web()

    @field_validator("mailboxes")
    @classmethod
    def _both_mailboxes(cls, value: dict[str, Mailbox]) -> dict[str, Mailbox]:
        missing = {"worldline", "bosa"} - set(value)
        if missing:
            raise ValueError(f"the mailbox(es) {', '.join(sorted(missing))} must be configured")
        return value

    @model_validator(mode="after")
    def _known_names(self) -> Settings:
        if self.answers.from_mailbox not in self.mailboxes:
            raise ValueError(f"answers.from_mailbox names no configured mailbox ({self.answers.from_mailbox!r})")
        for name in ("prevalidation", "encoding"):
            party = getattr(self.deadlines, name).party
            if party not in self.mailboxes:
                raise ValueError(f"deadlines.{name}.party names no configured mailbox ({party!r})")
        unknown = set(self.web.staff) - set(self.mailboxes)
        if unknown:
            raise ValueError(f"web.staff names no configured mailbox ({', '.join(sorted(unknown))})")
        return self

    def allowed_staff(self, team: str) -> tuple[str, ...]:
        """Who may sign in to the staff page as a member of `team`."""
        return self.web.staff.get(team, self.mailboxes[team].staff)

    def watched_folders(self) -> tuple[tuple[str, str], ...]:
        """(mailbox, folder) of every folder the daemon watches: each IMAP mailbox's inbox and
        sent folder."""
        return tuple((name, folder) for name, box in self.mailboxes.items() if box.imap is not None
                     for folder in dict.fromkeys((box.imap.inbox, box.imap.sent)))

    def mailbox_of(self, address: str) -> str | None:
        """The name of the watched mailbox whose shared address or staff list has `address`."""
        address = address.lower()
        for name, box in self.mailboxes.items():
            if address == box.address or address in box.staff:
                return name
        return None

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(box.address for box in self.mailboxes.values())


MAILBOX_NAMES = ("worldline", "bosa")

# What a key of each pydantic error type should hold, in the words of someone editing TOML.
_EXPECTED = {
    "int_parsing": "a whole number", "int_type": "a whole number", "int_from_float": "a whole number",
    "float_parsing": "a number", "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text in quotes", "path_type": "a path in quotes",
    "time_parsing": 'a time of day such as "08:30"', "time_type": 'a time of day such as "08:30"',
    "tuple_type": "a list in square brackets", "list_type": "a list in square brackets",
    "greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}", "less_than_equal": "at most {le}",
}


def _sentence(error: ValidationError, source: str, data: Any = None) -> str:
    # A misspelt key explains the "required" error that comes with it: name it first.
    first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(str(p) for p in first["loc"])
    where = ".".join(loc) or "the file"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    if loc[:1] == ("mailboxes",) and (misspelt := _misspelt_mailbox(data)):
        return f"{source}: {misspelt}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{source}: {_unknown_key(loc, first['input'])}{more}"
    if first["type"] == "missing":
        message = "is required"
    elif expected := _expected(first, where):
        message = f"should be {expected}, not {_as_toml(first['input'])}"
    return f"{source}: {where} {message}{more}"


def _expected(error: Any, where: str) -> str | None:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("model_type", "dict_type"):
        return f"a table ([{where}] and its keys)"
    if kind == "string_pattern_mismatch":
        choices = re.fullmatch(r"\^\(([\w|]+)\)\$", ctx.get("pattern", ""))
        return "one of " + ", ".join(f'"{c}"' for c in choices.group(1).split("|")) if choices else None
    return _EXPECTED[kind].format(**ctx) if kind in _EXPECTED else None


def _as_toml(value: Any) -> str:
    """A value as it was written in the file (near enough), cut short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_as_toml(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "a table"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(loc: tuple[str, ...], value: Any) -> str:
    """'[answer] is not a known section: did you mean [answers]?'"""
    section = isinstance(value, dict)

    def name(path: tuple[str, ...]) -> str:
        return f"[{'.'.join(path)}]" if section else ".".join(path)
    what = "section" if section else "key"
    close = difflib.get_close_matches(loc[-1], _known_keys(loc[:-1]), n=1)
    if close:
        return f"{name(loc)} is not a known {what}: did you mean {name((*loc[:-1], close[0]))}?"
    return f"{name(loc)} is not a known {what} (see config.example.toml)"


def _known_keys(path: tuple[str, ...]) -> list[str]:
    """The keys the settings accept under `path`."""
    def is_model(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, BaseModel)

    model: Any = Settings
    for part in path:
        if typing.get_origin(model) is dict:  # mailboxes.<name>
            model = typing.get_args(model)[1]
            continue
        field = model.model_fields.get(part) if is_model(model) else None
        if field is None:
            return []
        model = field.annotation
        if typing.get_origin(model) in (typing.Union, types.UnionType):  # Imap | None
            model = next((a for a in typing.get_args(model) if is_model(a)), model)
    if typing.get_origin(model) is dict:
        return list(MAILBOX_NAMES)
    return list(model.model_fields) if is_model(model) else []


def _misspelt_mailbox(data: Any) -> str | None:
    """'[mailboxes.worldine] is not a known mailbox: did you mean [mailboxes.worldline]?'"""
    boxes = data.get("mailboxes") if isinstance(data, dict) else None
    if not isinstance(boxes, dict):
        return None
    for name in boxes:
        close = difflib.get_close_matches(str(name), MAILBOX_NAMES, n=1)
        if name not in MAILBOX_NAMES and close:
            return f"[mailboxes.{name}] is not a known mailbox: did you mean [mailboxes.{close[0]}]?"
    return None


def parse_settings(data: dict[str, Any], source: str = "configuration", folder: Path | None = None) -> Settings:
    """`folder`: where relative paths are taken from (the configuration file's); None keeps them
    relative to the working directory."""
    try:
        return Settings.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        raise ConfigError(_sentence(exc, source, data)) from None


def load_settings(path: Path | str | Traversable) -> Settings:
    """The settings in the file `path`, its relative paths taken from its folder."""
    path = Path(path) if isinstance(path, str) else path
    folder = path.absolute().parent if isinstance(path, Path) else None
    return parse_settings(read_toml(path, "configuration file", ConfigError), str(path), folder)
