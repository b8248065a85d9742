"""The embedded default: the bot's settings pointed at a local sandbox (mailbot run, demo), and
the same configuration and database for every command started without --config."""

from __future__ import annotations

import os
import tomllib
from importlib.resources.abc import Traversable
from pathlib import Path

from mailbot.config import Settings, parse_settings
from mailbot.resources import SANDBOX_CONFIG
from mailbot.transport.sandbox import Sandbox

ROOT_FOLDER = Path("/var/lib/mailbot/sandbox")


def default_folder() -> Path:
    """Where the sandbox keeps its mail and its database unless told otherwise: the user's state
    folder ($XDG_STATE_HOME, else ~/.local/state), the same from any working directory. For root
    without XDG_STATE_HOME, /var/lib/mailbot/sandbox: root's home is closed to the user "nobody"
    the sandbox's Dovecot runs as (transport/sandbox.py)."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    if os.path.isabs(state):
        return Path(state) / "mailbot" / "sandbox"
    if os.geteuid() == 0:
        return ROOT_FOLDER
    return Path.home() / ".local" / "state" / "mailbot" / "sandbox"


def sandbox_database(folder: Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'mailbot.sqlite'}"  # resolved as Sandbox resolves its folder


def default_settings(folder: Path | None = None) -> Settings:
    """The sandbox's configuration with the sandbox's database: what every command uses
    without --config (no mail server is needed to read the database)."""
    data = tomllib.loads(SANDBOX_CONFIG.read_text(encoding="utf-8"))
    data["database"] = {"url": sandbox_database(folder or default_folder())}
    return parse_settings(data, "the sandbox's configuration")


def sandbox_for(config: Path | Traversable = SANDBOX_CONFIG, folder: Path | None = None) -> tuple[Sandbox, dict]:
    """A sandbox whose users receive the configuration's mailbox and staff addresses."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    addresses = {}
    for name, box in data["mailboxes"].items():
        addresses[box["address"]] = name
        for staff in box.get("staff", []):
            addresses[staff] = name  # staff mail lands in their team's box (a test convenience)
    sandbox = Sandbox(folder or default_folder(), addresses=addresses)
    return sandbox, data


def sandbox_settings(sandbox: Sandbox, data: dict, database_url: str | None = None) -> Settings:
    """The configuration with IMAP and SMTP pointed at the running sandbox. Passwords travel in
    environment variables of this process only, never in a file the bot reads as configuration."""
    data = {**data, "mailboxes": {k: dict(v) for k, v in data["mailboxes"].items()}}
    for name, box in data["mailboxes"].items():
        user, password = sandbox.credentials(name)
        variable = f"MAILBOT_SANDBOX_{name.upper()}_PASSWORD"
        os.environ[variable] = password
        box["imap"] = {"host": sandbox.imap_host, "port": sandbox.imap_port, "user": user,
                       "security": "plain", "password_env": variable}
    data["smtp"] = {"host": sandbox.smtp_host, "port": sandbox.smtp_port, "security": "plain"}
    data["database"] = {"url": database_url or sandbox_database(sandbox.folder)}
    return parse_settings(data, "sandbox")


def sandbox_help(sandbox: Sandbox, settings: Settings) -> str:
    """What `mailbot run` prints: where the sandbox is, and how to point a mail program at it."""
    wl, bosa = settings.mailboxes["worldline"].address, settings.mailboxes["bosa"].address
    users = {"worldline": f"{wl}, and what Worldline staff send",
             "bosa": f"{bosa}, and what BOSA staff send",
             "outside": "every mail the bot sends to clients"}
    width = max(len(sandbox.credentials(u)[1]) for u in users)
    lines = [*sandbox.notices,
             (f"mailbot sandbox: send mail to {wl} (and {bosa}) through SMTP {sandbox.smtp_host}:{sandbox.smtp_port}; "
              f"read the mailboxes over IMAP {sandbox.imap_host}:{sandbox.imap_port}. "
              f"Mail is kept in {sandbox.folder}."),
             "To point a mail program at it (no TLS, plain password; the same ports at every start):",
             f"  IMAP  host {sandbox.imap_host}  port {sandbox.imap_port}  security none"]
    for user, what in users.items():
        lines.append(f"        user {user:<10} password {sandbox.credentials(user)[1]:<{width}}  ({what})")
    lines.append(f"  SMTP  host {sandbox.smtp_host}  port {sandbox.smtp_port}  security none, no login")
    attach = f" --attach @{sample_form(sandbox.folder)}"
    lines.append(f"  Try:  swaks --server {sandbox.smtp_host}:{sandbox.smtp_port} --from marie.dubois@sambreville.be "
                 f"--to {wl},{bosa} --header 'Subject: BOSA M1036 - Bon de commande' "
                 f"--body 'Bonjour, ci-joint notre bon de commande.'{attach}")
    lines.append("Ctrl-C stops.")
    return "\n".join(lines)


def sample_form(folder: Path) -> Path:
    """An incomplete sample order form in the sandbox folder, for a first try with a mail program."""
    from mailbot.forms import load_rules
    from mailbot.forms.samples import sample_forms

    path = Path(folder) / "incomplete_FR.xlsx"
    if not path.is_file():
        path.write_bytes(sample_forms(load_rules())["incomplete_FR.xlsx"])
    return path
