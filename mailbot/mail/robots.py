"""Is a mail written by a program? Pure detectors, to classify mail and never to answer a
robot (RFC 3834: no automatic answer to automatic mail, bounces or lists).

Each detector returns None when it finds nothing, else the reason, naming the header or the
rule ("Auto-Submitted: auto-replied", "List-Id present", "subject looks like an out-of-office
(fr)"), so that every decision not to answer is recorded with its reason. Headers are read as
their RFCs say; the words (subjects, address names) live in rules/robots.toml.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.utils import getaddresses
from functools import lru_cache
from pathlib import Path
from typing import Any

from flufl.bounce import all_failures

from mailbot.errors import RulesError
from mailbot.mail.model import ParsedMail
from mailbot.mail.parse import mime_tree
from mailbot.tomlfile import read_toml

DEFAULT_ROBOT_RULES = Path(__file__).resolve().parents[2] / "rules" / "robots.toml"
# flufl.bounce runs ~40 regexes over every body line, some quadratic in the line's length
# (Netscape's ".*<"): it reads only the start of suspicious mail, with lines cut short. The
# explanation of a non-standard bounce comes first; the returned message follows it.
BOUNCE_SCAN_BYTES = 128_000
BOUNCE_SCAN_LINE = 200
_NOT_AUTO = frozenset({"no", "false", "0", "off"})
_SUPPRESS_AUTO = frozenset({"all", "oof", "autoreply"})
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_TAGS = re.compile(r"^(?:\s*[\[(][^\])]{0,40}[\])])+")


@dataclass(frozen=True)
class RobotRules:
    out_of_office: dict[str, tuple[str, ...]]  # language -> folded subject phrases
    bounce_subjects: tuple[str, ...]
    bounce_senders: tuple[str, ...]
    bounce_sender_prefixes: tuple[str, ...]
    address_words: tuple[str, ...]
    address_suffixes: tuple[str, ...]
    address_prefixes: tuple[str, ...]
    address_pattern: re.Pattern[str]


def fold(text: str) -> str:
    """How phrases are compared: no case, no accents, single spaces."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.split())


def _starts_with_word(text: str, phrases: tuple[str, ...]) -> str | None:
    """The phrase `text` starts with, followed by a non-word character or the end."""
    for phrase in phrases:
        if text.startswith(phrase) and not text[len(phrase):len(phrase) + 1].isalnum():
            return phrase
    return None


def _subject_key(subject: str) -> str:
    # cut first: a hostile 100 KB subject must cost nothing
    return fold(_TAGS.sub("", subject[:300]))


def _local_part(address: str) -> str:
    return fold(address.rpartition("@")[0] if "@" in address else address)


# ---------------------------------------------------------------- detectors

def bounce_reason(mail: ParsedMail, raw: bytes | None = None, *,
                  rules: RobotRules | None = None) -> str | None:
    """A delivery status notification (a bounce)."""
    rules = rules or default_robot_rules()
    content_type = mail.headers.get("content-type", "").lower()
    if mail.content_type == "multipart/report" and re.search(
            r"report-type\s*=\s*\"?delivery-status", content_type):
        return "multipart/report; report-type=delivery-status"
    if mail.headers.get("x-failed-recipients", "").strip():
        return "X-Failed-Recipients present"
    local = _local_part(mail.sender or "")
    robot_sender = local in rules.bounce_senders or local.startswith(rules.bounce_sender_prefixes)
    if not (robot_sender or mail.return_path == ""):
        return None
    if phrase := _starts_with_word(_subject_key(mail.subject), rules.bounce_subjects):
        who = f"from {local}" if robot_sender else "with Return-Path <>"
        return f"delivery failure subject ({phrase!r}) {who}"
    if raw is not None:
        return _flufl_reason(raw)
    return None


def _flufl_reason(raw: bytes) -> str | None:
    head = raw[:BOUNCE_SCAN_BYTES]
    if len(raw) > BOUNCE_SCAN_BYTES:
        head = head[:head.rfind(b"\n") + 1]
    short = b"\n".join(line[:BOUNCE_SCAN_LINE] for line in head.split(b"\n"))
    tree = mime_tree(short)
    try:
        if not getaddresses([tree.get("from", "")]):
            return None  # flufl's Yale reader crashes (and logs an error) on such a From
    except Exception:  # noqa: BLE001
        return None
    if any(p.get_content_type() == "message/delivery-status" for p in tree.walk()):
        # a DSN, even outside multipart/report (and flufl's DSN reader would parse its
        # fields' parameters with the stdlib's quadratic parser)
        return "message/delivery-status part present"
    try:
        temporary, permanent = all_failures(tree)
    except Exception:  # noqa: BLE001 - a detector choking on a hostile mail finds nothing
        return None
    if permanent or temporary:
        kind = "permanent" if permanent else "temporary"
        return f"flufl.bounce: {kind} delivery failure for {len(permanent | temporary)} recipient(s)"
    return None


def auto_reply_reason(mail: ParsedMail, *, rules: RobotRules | None = None) -> str | None:
    """An automatic reply or other program-generated mail (RFC 3834 and vendor headers)."""
    rules = rules or default_robot_rules()
    h = mail.headers
    auto = h.get("auto-submitted", "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    # Outlook/Exchange mark their own generated mail so that nobody auto-answers it
    suppress = {v.strip().lower() for v in re.split(r"[,;\s]+", h.get("x-auto-response-suppress", ""))}
    if found := sorted(suppress & _SUPPRESS_AUTO):
        return f"X-Auto-Response-Suppress: {', '.join(found)}"
    for name, label in (("x-autoreply", "X-Autoreply"), ("x-autorespond", "X-Autorespond"),
                        ("x-autogenerated", "X-Autogenerated")):
        value = h.get(name, "").strip()
        if value and value.lower() not in _NOT_AUTO:
            return f"{label}: {value[:60]}"
    if h.get("precedence", "").strip().lower() == "auto_reply":  # older autoresponders
        return "Precedence: auto_reply"
    if source := h.get("x-ms-exchange-generated-message-source", "").strip():
        return f"X-MS-Exchange-Generated-Message-Source: {source[:60]}"
    content_type = h.get("content-type", "").lower()
    if mail.content_type == "multipart/report" and "disposition-notification" in content_type:
        return "multipart/report; report-type=disposition-notification (read receipt)"
    key = _subject_key(mail.subject)
    for language, phrases in rules.out_of_office.items():
        if _starts_with_word(key, phrases):
            return f"subject looks like an out-of-office ({language})"
    return None


def bulk_reason(mail: ParsedMail) -> str | None:
    """Mailing lists and bulk mail (RFC 2369, RFC 2919, Precedence)."""
    precedence = mail.headers.get("precedence", "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name, label in (("list-id", "List-Id"), ("list-unsubscribe", "List-Unsubscribe"),
                        ("list-post", "List-Post")):
        if mail.headers.get(name, "").strip():
            return f"{label} present"
    return None


def robot_address_reason(address: str, *, rules: RobotRules | None = None) -> str | None:
    """An address that belongs to a program: only the local part counts."""
    rules = rules or default_robot_rules()
    local = _local_part(address.strip())
    if not local:
        return None
    if m := rules.address_pattern.search(local):
        return f"robot address ({m.group(1)})"
    for suffix in rules.address_suffixes:
        if local.endswith(suffix) and len(local) > len(suffix):
            return f"robot address (ends with {suffix})"
    for prefix in rules.address_prefixes:
        if local.startswith(prefix) and len(local) > len(prefix):
            return f"robot address (starts with {prefix})"
    return None


def null_return_path_reason(mail: ParsedMail) -> str | None:
    """The null reverse-path: RFC 5321 reserves it for notifications that must not be answered."""
    return "Return-Path: <>" if mail.return_path == "" else None


# ---------------------------------------------------------------- rules file

def _phrases(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    if key not in table:
        raise RulesError(f"{where}: the key '{key}' is missing")
    value = table[key]
    if not isinstance(value, list) or not value:
        raise RulesError(f"{where}: '{key}' must be a non-empty list of words, not {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str) or not fold(item):
            raise RulesError(f"{where}: '{key}' holds {item!r}, which is not a word")
        out.append(fold(item))
    # longest first, so that the reason names the most specific phrase
    return tuple(sorted(set(out), key=lambda p: (-len(p), p)))


def _table(data: dict[str, Any], key: str, known: set[str]) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise RulesError(f"the file: the table [{key}] is missing")
    if extra := sorted(set(table) - known):
        raise RulesError(f"[{key}]: unknown key(s) {', '.join(extra)}")
    return table


def parse_robot_rules(data: dict[str, Any], source: str = "rules") -> RobotRules:
    """Validate the parsed TOML; every mistake names the entry it is in."""
    try:
        return _parse(data)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


def _parse(data: dict[str, Any]) -> RobotRules:
    if extra := sorted(set(data) - {"out_of_office", "bounce", "addresses"}):
        raise RulesError(f"the file: unknown table(s) {', '.join(extra)}")
    ooo = data.get("out_of_office")
    if not isinstance(ooo, dict) or not ooo:
        raise RulesError("the file: the table [out_of_office] is missing or empty")
    out_of_office = {lang: _phrases(ooo, lang, "[out_of_office]") for lang in ooo}
    bounce = _table(data, "bounce", {"subjects", "senders", "sender_prefixes"})
    addresses = _table(data, "addresses", {"words", "suffixes", "prefixes"})
    words = _phrases(addresses, "words", "[addresses]")
    pattern = re.compile(r"(?:^|[._+-])(" + "|".join(map(re.escape, words)) + r")(?=$|[._+-])")
    return RobotRules(
        out_of_office=out_of_office,
        bounce_subjects=_phrases(bounce, "subjects", "[bounce]"),
        bounce_senders=_phrases(bounce, "senders", "[bounce]"),
        bounce_sender_prefixes=_phrases(bounce, "sender_prefixes", "[bounce]"),
        address_words=words,
        address_suffixes=_phrases(addresses, "suffixes", "[addresses]"),
        address_prefixes=_phrases(addresses, "prefixes", "[addresses]"),
        address_pattern=pattern,
    )


def load_robot_rules(path: Path | str | None = None) -> RobotRules:
    path = Path(path) if path is not None else DEFAULT_ROBOT_RULES
    return parse_robot_rules(read_toml(path, "rules file"), str(path))


@lru_cache(maxsize=4)
def default_robot_rules() -> RobotRules:
    return load_robot_rules(DEFAULT_ROBOT_RULES)
