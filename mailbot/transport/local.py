"""The embedded default: the bot's settings pointed at a local sandbox (mailbot run, demo)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from mailbot.config import ROOT, Settings, parse_settings
from mailbot.transport.sandbox import Sandbox

SANDBOX_CONFIG = ROOT / "data" / "sandbox.toml"
SAMPLE_FORM = ROOT / "data" / "samples" / "incomplete_FR.xlsx"


def sandbox_for(config: Path = SANDBOX_CONFIG, folder: Path | None = None) -> tuple[Sandbox, dict]:
    """A sandbox whose users receive the configuration's mailbox and staff addresses."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    addresses = {}
    for name, box in data["mailboxes"].items():
        addresses[box["address"]] = name
        for staff in box.get("staff", []):
            addresses[staff] = name  # staff mail lands in their team's box (a test convenience)
    sandbox = Sandbox(folder or ROOT / "data" / "sandbox", addresses=addresses)
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
    data["database"] = {"url": database_url or f"sqlite:///{sandbox.folder / 'mailbot.sqlite'}"}
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
              f"read the mailboxes over IMAP {sandbox.imap_host}:{sandbox.imap_port}. Mail is kept in {sandbox.folder}."),
             "To point a mail program at it (no TLS, plain password; the same ports at every start):",
             f"  IMAP  host {sandbox.imap_host}  port {sandbox.imap_port}  security none"]
    for user, what in users.items():
        lines.append(f"        user {user:<10} password {sandbox.credentials(user)[1]:<{width}}  ({what})")
    lines.append(f"  SMTP  host {sandbox.smtp_host}  port {sandbox.smtp_port}  security none, no login")
    attach = f" --attach @{SAMPLE_FORM}" if SAMPLE_FORM.is_file() else ""
    lines.append(f"  Try:  swaks --server {sandbox.smtp_host}:{sandbox.smtp_port} --from marie.dubois@sambreville.be "
                 f"--to {wl},{bosa} --header 'Subject: BOSA M1036 - Bon de commande' "
                 f"--body 'Bonjour, ci-joint notre bon de commande.'{attach}")
    lines.append("Ctrl-C stops.")
    return "\n".join(lines)
