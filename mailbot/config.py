"""The configuration: a TOML file read into typed, validated settings, passed in explicitly.

Every key has a default (see config.example.toml); a mistake is reported as one sentence
naming the key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mailbot.errors import ConfigError
from mailbot.tomlfile import read_toml

ROOT = Path(__file__).resolve().parents[1]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _email(value: str) -> str:
    value = value.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an e-mail address")
    return value


LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Secret(_Strict):
    """Where a password comes from: never the configuration file itself."""
    password_env: str | None = None  # the name of an environment variable
    password_file: Path | None = None  # a file holding the password (first line)

    def password(self, what: str) -> str:
        import os

        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"{what}: the environment variable {self.password_env} is not set")
            return value
        if self.password_file:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ConfigError(f"{what}: cannot read the password file {self.password_file}") from exc
        raise ConfigError(f"{what}: set password_env or password_file")


def _security(host: str, security: str, where: str) -> None:
    if security == "plain" and host not in LOOPBACK:
        raise ValueError(f"{where}: security 'plain' is allowed only to a loopback host, not {host!r}")


class Imap(Secret):
    host: str
    port: int = 993
    user: str
    security: str = Field(default="tls", pattern="^(tls|starttls|plain)$")
    inbox: str = "INBOX"
    sent: str = "Sent"  # where staff replies (and the bot's own sent mail) are
    keyword: str = "$MailbotDone"  # set on processed mail where the server allows keywords
    move_to: str | None = None  # else processed mail is moved here (keywords not allowed)

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> "Imap":
        _security(self.host, self.security, "imap")
        return self


class Smtp(Secret):
    host: str
    port: int = 587
    user: str | None = None  # no AUTH when absent
    security: str = Field(default="starttls", pattern="^(tls|starttls|plain)$")
    # Exchange and Microsoft 365 keep a copy of what is sent in the Sent folder; other servers
    # do not, and the bot then appends its copy there itself.
    saves_to_sent: bool = False

    @model_validator(mode="after")
    def _plain_only_on_loopback(self) -> "Smtp":
        _security(self.host, self.security, "smtp")
        return self


class Mailbox(_Strict):
    address: str
    imap: Imap | None = None  # needed by `mailbot run`, not by replay
    # Staff who write from their own address rather than the shared mailbox.
    staff: tuple[str, ...] = ()
    language: str = "fr"  # of the staff digest: "fr", "nl" or "en"

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
    timezone: str = "Europe/Brussels"


class Schedule(_Strict):
    """When the sweeps and digests run: on business days of `calendar`, Brussels time."""
    calendar: str = "public"
    sweep_times: tuple[dt.time, ...] = (dt.time(9, 0), dt.time(11, 0), dt.time(14, 0), dt.time(16, 0))
    digest_time: dt.time = dt.time(8, 30)


class Answers(_Strict):
    from_mailbox: str = "worldline"  # the watched mailbox the bot writes from
    reminder_days: int = Field(default=5, gt=0)  # business days a client may owe a document
    per_purpose_per_day: int = Field(default=1, gt=0)  # per address and dossier (RFC 3834)
    per_address_per_day: int = Field(default=10, gt=0)
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
    # Processes that read mail ahead (parsing, the form checker, PDF text) on another core;
    # 0 reads in the daemon's own process (one core, or ~50 MB of memory to spare).
    readers: int = Field(default=1, ge=0, le=8)
    # The SMTP connection (and the sent folder's) stays open for the next mail; closed after
    # this long without one.
    smtp_idle_seconds: float = Field(default=5, gt=0)


class Files(_Strict):
    """Relative paths are taken from the project's folder, wherever mailbot is started."""
    form_rules: Path = ROOT / "rules" / "order_form.toml"
    subject_rules: Path = ROOT / "rules" / "subjects.toml"
    document_rules: Path = ROOT / "rules" / "documents.toml"
    robot_rules: Path = ROOT / "rules" / "robots.toml"
    calendars: Path = ROOT / "rules" / "calendars.toml"

    @field_validator("*")
    @classmethod
    def _from_root(cls, value: Path) -> Path:
        return value if value.is_absolute() else ROOT / value


class Database(_Strict):
    url: str = f"sqlite:///{ROOT / 'data' / 'mailbot.sqlite'}"

    @field_validator("url")
    @classmethod
    def _sqlite_from_root(cls, value: str) -> str:
        path = value.removeprefix("sqlite:///")
        if value.startswith("sqlite:///") and path and not path.startswith(("/", ":memory:")):
            return f"sqlite:///{ROOT / path}"
        return value


class Settings(_Strict):
    mailboxes: dict[str, Mailbox]
    database: Database = Database()
    deadlines: Deadlines = Deadlines()
    process: Process = Process()
    schedule: Schedule = Schedule()
    answers: Answers = Answers()
    smtp: Smtp | None = None  # needed by `mailbot run`
    daemon: Daemon = Daemon()
    files: Files = Files()

    @field_validator("mailboxes")
    @classmethod
    def _both_mailboxes(cls, value: dict[str, Mailbox]) -> dict[str, Mailbox]:
        missing = {"worldline", "bosa"} - set(value)
        if missing:
            raise ValueError(f"the mailbox(es) {', '.join(sorted(missing))} must be configured")
        return value

    @model_validator(mode="after")
    def _known_names(self) -> "Settings":
        if self.answers.from_mailbox not in self.mailboxes:
            raise ValueError(f"answers.from_mailbox names no configured mailbox ({self.answers.from_mailbox!r})")
        for name in ("prevalidation", "encoding"):
            party = getattr(self.deadlines, name).party
            if party not in self.mailboxes:
                raise ValueError(f"deadlines.{name}.party names no configured mailbox ({party!r})")
        return self

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
        return f"{name(loc)} is not a known {what}: did you mean {name(loc[:-1] + (close[0],))}?"
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


def parse_settings(data: dict[str, Any], source: str = "configuration") -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_sentence(exc, source, data)) from None


def load_settings(path: Path | str) -> Settings:
    path = Path(path)
    return parse_settings(read_toml(path, "configuration file", ConfigError), str(path))
