"""A client's mail that staff forwarded to a watched mailbox, and who that client is (pure).

BOSA's service manager forwards to ecom-belgium the mails clients sent to BOSA: as an attached
message (message/rfc822), or inline under the header lines a mail program writes
("---------- Forwarded message ---------", Outlook's "De : / Envoyé : / À : / Objet :", Apple
Mail's "Begin doorgestuurd bericht:"...). Such a mail is the client's: `forwarded_client` names
the client and `ForwardedClient.client_mail` is the mail as the client wrote it, which the
pipeline files and answers (the forwarder in copy). The markers and labels are data
(mailbot/rules/forwards.toml, or [files] forward_rules).

Only a forward from a watched mailbox or its staff counts, sent to the watched mailboxes only:
a stranger forwarding someone's mail is not trusted to name a client, and staff writing to a
client with the client's mail quoted are not forwarding it to the bot. The client's address must
be a valid address (email-validator, syntax only, no DNS).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from mailbot.addresses import normalise_address
from mailbot.config import Settings
from mailbot.errors import RulesError
from mailbot.mail.documents import fold
from mailbot.mail.model import Address, ParsedMail
from mailbot.mail.subject import SubjectInfo
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml, require

DEFAULT_FORWARD_RULES = rules_file("forwards.toml")
LABELS = ("from", "subject", "date", "to", "cc")
_LABEL_LINE = re.compile(r"([^:]{1,40}?)\s*:\s*(.*)")
_TRIM = " \t>*_-|\u00a0"
_ADDRESS = re.compile(r"""(?:mailto:)?([^\s<>()\[\]{},;:"'@]+@[^\s<>()\[\]{},;:"'@]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class ForwardRules:
    markers: frozenset[str]  # folded
    labels: dict[str, frozenset[str]]  # from/subject/date/to/cc -> folded labels
    search_lines: int
    header_lines: int


def parse_forward_rules(data: dict[str, Any], source: str = "forwards") -> ForwardRules:
    try:
        markers = require(data.get("markers", {}), "lines", list, f"{source}: [markers]")
        labels = data.get("labels")
        if not isinstance(labels, dict):
            raise RulesError(f"{source}: the [labels] table is missing")
        found = {k: frozenset(fold(w) for w in require(labels, k, list, f"{source}: [labels]")) for k in LABELS}
        limits = data.get("limits", {})
        search = require(limits, "search_lines", int, f"{source}: [limits]")
        header = require(limits, "header_lines", int, f"{source}: [limits]")
    except (TypeError, AttributeError) as exc:
        raise RulesError(f"{source}: {exc.__class__.__name__}: {exc}") from exc
    if not (0 < search <= 10_000 and 0 < header <= 100):
        raise RulesError(f"{source}: [limits] search_lines is 1 to 10000, header_lines 1 to 100")
    return ForwardRules(frozenset(fold(w) for w in markers), found, search, header)


def load_forward_rules(path: Path | str | None = None) -> ForwardRules:
    """The rules in `path`; None: the rules shipped with mailbot."""
    return load_toml(path, DEFAULT_FORWARD_RULES, parse_forward_rules)


@dataclass(frozen=True)
class ForwardedClient:
    """A client's mail forwarded by staff; `client` None when who wrote it cannot be told."""
    by: str  # the watched mailbox whose address or staff forwarded it
    forwarder: str
    how: str  # "attached" (a message/rfc822 part) | "inline" (under the forward's header lines)
    client: Address | None
    problem: str  # when `client` is None: a code of rules/reasons.toml (forward_no_sender ...)
    found: str  # what the From line held, for the note to staff
    subject: str  # the client's subject ("" when the forward did not show it)
    text: str  # what the client wrote

    def client_mail(self, mail: ParsedMail) -> ParsedMail:
        """The mail as the client's: from the client, with the client's subject and text; its
        attachments, ids and headers stay those of the mail received."""
        assert self.client is not None
        return dataclasses.replace(mail, from_=self.client, from_all=(self.client,), reply_to=(),
                                   subject=self.subject or mail.subject, body_text=self.text or mail.body_text)


def forwarded_client(mail: ParsedMail, subject: SubjectInfo, settings: Settings,
                     rules: ForwardRules) -> ForwardedClient | None:
    """The client's mail that this mail forwards, if it is a forward from a watched mailbox or its
    staff to the watched mailboxes; None when it is not one (or forwards a staff mail)."""
    sender = mail.sender
    by = settings.mailbox_of(sender) if sender else None
    if by is None or sender is None or not mail.to \
            or any(settings.mailbox_of(a.email) is None for a in mail.recipients()):
        return None
    if mail.attached_mails:
        inner = mail.attached_mails[0]
        found = (inner.from_.email if inner.from_ else "")
        return _named(by, sender, "attached", found, inner.subject, mail.attached_text, settings)
    if not subject.is_forward:
        return None
    block = _header_block(mail.body_text, rules)
    if block is None:
        return ForwardedClient(by, sender, "inline", None, "forward_no_sender", "", "", "")
    headers, text = block
    return _named(by, sender, "inline", headers.get("from", ""), headers.get("subject", ""), text, settings)


def _named(by: str, forwarder: str, how: str, found: str, subject: str, text: str,
           settings: Settings) -> ForwardedClient | None:
    def unknown(problem: str) -> ForwardedClient:
        return ForwardedClient(by, forwarder, how, None, problem, found, subject, text)
    if not found.strip():
        return unknown("forward_no_sender")
    addresses = list(dict.fromkeys(m.lower() for m in _ADDRESS.findall(found)))
    if len(addresses) != 1:
        return unknown("forward_no_address")
    if settings.mailbox_of(normalise_address(addresses[0])) is not None:
        return None  # staff forwarding staff's mail: no client in it
    try:
        email = normalise_address(validate_email(addresses[0], check_deliverability=False).normalized)
    except EmailNotValidError:
        return unknown("forward_invalid_address")
    name = _ADDRESS.sub("", found).strip(" \t<>[]\"'()*")
    return ForwardedClient(by, forwarder, how, Address(name, email), "", found, subject, text)


def _header_block(body: str, rules: ForwardRules) -> tuple[dict[str, str], str] | None:
    """The forwarded mail's header lines (what they hold by label) and the text under them: after
    a marker line, or Outlook's block that starts with a From line and names a subject."""
    lines = body.split("\n", rules.search_lines)[:rules.search_lines]
    for i, line in enumerate(lines):
        cleaned = line.strip(_TRIM).rstrip(":").strip()
        if cleaned and fold(cleaned) in rules.markers:
            start = next((j for j in range(i + 1, min(i + 4, len(lines))) if lines[j].strip()), None)
            if start is not None and (found := _read_block(lines, start, rules)):
                return found
        elif _label(line, rules) == "from" and (found := _read_block(lines, i, rules)) and "subject" in found[0]:
            return found
    return None


def _label(line: str, rules: ForwardRules) -> str | None:
    match = _LABEL_LINE.fullmatch(line.strip().lstrip(_TRIM))
    if match is None:
        return None
    label = fold(match.group(1))
    return next((k for k, words in rules.labels.items() if label in words), None)


def _read_block(lines: list[str], start: int, rules: ForwardRules) -> tuple[dict[str, str], str] | None:
    """Header lines from `start` to the first blank line; None unless there is a From among them."""
    headers: dict[str, str] = {}
    last = None
    end = start
    for end in range(start, min(start + rules.header_lines, len(lines))):
        line = lines[end]
        if not line.strip():
            break
        key = _label(line, rules)
        found = _LABEL_LINE.fullmatch(line.strip().lstrip(_TRIM)) if key is not None else None
        if key is not None and found is not None and key not in headers:
            headers[key] = found.group(2).strip().lstrip("* \t")
            last = key
        elif last is not None:  # a header wrapped onto the next line
            headers[last] += " " + line.strip()
        else:
            return None
    else:
        end += 1
    if "from" not in headers:
        return None
    return headers, "\n".join(lines[end:]).strip()
