"""Is a mail written by a program? Pure detectors, to classify mail and never to answer a
robot (RFC 3834: no automatic answer to automatic mail, bounces or lists).

Each detector returns None when it finds nothing, else the reason, naming the header or the
rule ("Auto-Submitted: auto-replied", "List-Id present", "subject looks like an out-of-office
(fr)"), so that every decision not to answer is recorded with its reason. Headers are read as
their RFCs say; the words (subjects, address names, the canned texts of auto-responders that
set no header, where a reply's quoted part starts) live in mailbot/rules/robots.toml ([files]
robot_rules replaces it); every detector is given them by its caller.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from flufl.bounce import all_failures

from mailbot.errors import RulesError
from mailbot.mail.model import ParsedMail
from mailbot.mail.parse import mime_tree
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml

DEFAULT_ROBOT_RULES = rules_file("robots.toml")
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
    # canned texts of auto-responders that set no header: (what, language, pattern) with the
    # phrases of [out_of_office_text] and [acknowledgement_text]
    text_patterns: tuple[tuple[str, str, re.Pattern[str]], ...] = ()
    quote_line_starts: tuple[str, ...] = ()  # [replies]: where the quoted mail starts in a reply
    quote_intro_words: tuple[str, ...] = ()
    automatic_within_seconds: float = 60.0  # a reply to the bot's answer faster than this is a program's
    # [out_of_office_without_attachment]: subject phrases that count only on a mail with no attachment
    out_of_office_bare: dict[str, tuple[str, ...]] = field(default_factory=dict)


def fold(text: str) -> str:
    """How phrases are compared: no case, no accents, single spaces."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.split())


def _starts_with_word(text: str, phrases: tuple[str, ...]) -> str | None:
    """The phrase `text` starts with, followed by a non-word character or the end (a phrase
    that ends with a colon, "absent:", needs nothing after it)."""
    for phrase in phrases:
        if text.startswith(phrase) and (not phrase[-1].isalnum()
                                        or not text[len(phrase):len(phrase) + 1].isalnum()):
            return phrase
    return None


def _colons(text: str) -> str:
    """French typography puts a space before the colon ("Absent : ..."): compare without it."""
    return text.replace(" :", ":")


def _subject_key(subject: str) -> str:
    # cut first: a hostile 100 KB subject must cost nothing
    return _colons(fold(_TAGS.sub("", subject[:300])))


def _local_part(address: str) -> str:
    return fold(address.rpartition("@")[0] if "@" in address else address)


# ---------------------------------------------------------------- detectors

def bounce_reason(mail: ParsedMail, raw: bytes | None = None, *,
                  rules: RobotRules) -> str | None:
    """A delivery status notification (a bounce)."""
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


def auto_reply_reason(mail: ParsedMail, *, rules: RobotRules) -> str | None:
    """An automatic reply or other program-generated mail (RFC 3834 and vendor headers)."""
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
    if not mail.attachments:  # "Absent : bon de commande" with the form attached is a client's
        for language, phrases in rules.out_of_office_bare.items():
            if _starts_with_word(key, phrases):
                return f"subject looks like an out-of-office ({language})"
    return None


def automatic_text_reason(mail: ParsedMail, *, is_reply: bool, rules: RobotRules) -> str | None:
    """A reply whose own text is an auto-responder's canned text (an out-of-office, an
    acknowledgement of receipt) from a responder that sets none of the headers above. Only a
    reply (`is_reply`: In-Reply-To, References or a reply prefix) that carries no attachment,
    whose own text is short, asks nothing and names no other address: a client who writes
    "je suis absente demain, merci de ...", "ma collègue x@y.be reprend le dossier", or sends a
    file is read as a client. The caller leaves staff out (mailbot/mail/kinds.py)."""
    if not is_reply or mail.attachments:
        return None
    own = own_text(mail.body_text, rules=rules)
    if not own or len(own) >= OWN_TEXT_MAX_CHARS or asks_something(own) or _names_another_address(own, mail):
        return None
    key = _plain(own)
    for what, language, pattern in rules.text_patterns:
        if m := pattern.search(key):
            return f"the text looks like {what} ({language}): {m.group(1)!r}"
    return None


OWN_TEXT_CHARS = 4000  # canned texts say what they are at once; a hostile body costs nothing
OWN_TEXT_MAX_CHARS = 500  # a canned text is short: a longer own text is a person's
_URL = re.compile(r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S*", re.IGNORECASE)
_ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Requests written without a question mark ("Merci de m'envoyer...", "Gelieve..."), compared on
# _plain text; "merci de votre message" is thanks, not a request.
_REQUEST = re.compile(
    r"(?<!\w)(?:merci de (?!(?:votre|vos|ton|tes|ce|cet|cette|un|une|nous avoir|m'avoir)(?!\w))"
    r"|(?:pouvez[- ]vous|pourriez[- ]vous|gelieve|kunt u|graag|please|bitte)(?!\w))")


def own_text(body: str, *, rules: RobotRules) -> str:
    """What the sender wrote above the mail it quotes: the body up to the first line that starts
    a quote ("> ...", "-----Original Message-----", the "From:" of a quoted header block) or
    introduces one (ends with a colon and names the writing: "Le 1 mars 2027, X a écrit :",
    "Op 1 mrt. 2027 schreef X <x@y.be>:"), as [replies] in the rules say."""
    lines = []
    for line in body[:OWN_TEXT_CHARS].split("\n"):
        key = _colons(fold(line))
        if key and (key.startswith(rules.quote_line_starts) or (key.endswith(":") and any(
                re.search(rf"(?<!\w){re.escape(word)}(?!\w)", key) for word in rules.quote_intro_words))):
            break
        lines.append(line)
    return "\n".join(lines).strip()


def asks_something(text: str) -> bool:
    """A question mark in the text, web addresses ("...?id=3") left out, or a request written
    without one ("merci de", "pouvez-vous", "gelieve", "kunt u", "graag", "please", "bitte")."""
    text = _URL.sub(" ", text)
    return "?" in text or "\uff1f" in text or bool(_REQUEST.search(_plain(text)))


def _names_another_address(text: str, mail: ParsedMail) -> bool:
    """An address other than the sender's own ("ma collègue x@y.be reprend le dossier")."""
    sender = (mail.sender or "").casefold()
    return any(a.casefold().strip(".") != sender for a in _ADDRESS.findall(text))


def quick_reply(seconds: float, *, rules: RobotRules) -> bool:
    """A reply this many seconds after the mail it answers came faster than a person writes."""
    return seconds <= rules.automatic_within_seconds


def _plain(text: str) -> str:
    """How canned texts are compared: folded, typographic apostrophes made plain."""
    return _colons(fold(text.replace("\u2019", "'").replace("\u2018", "'")))


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


def robot_address_reason(address: str, *, rules: RobotRules) -> str | None:
    """An address that belongs to a program: only the local part counts."""
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
        out.append(_colons(fold(item)))
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
    if extra := sorted(set(data) - {"out_of_office", "bounce", "addresses", "out_of_office_text",
                                    "acknowledgement_text", "replies", "out_of_office_without_attachment"}):
        raise RulesError(f"the file: unknown table(s) {', '.join(extra)}")
    out_of_office = _by_language(data, "out_of_office")
    bounce = _table(data, "bounce", {"subjects", "senders", "sender_prefixes"})
    addresses = _table(data, "addresses", {"words", "suffixes", "prefixes"})
    words = _phrases(addresses, "words", "[addresses]")
    pattern = re.compile(r"(?:^|[._+-])(" + "|".join(map(re.escape, words)) + r")(?=$|[._+-])")
    text_patterns = tuple(
        (what, language, re.compile(r"(?<!\w)(" + "|".join(re.escape(_plain(p)) for p in phrases) + r")(?!\w)"))
        for key, what in (("out_of_office_text", "an out-of-office"),
                          ("acknowledgement_text", "an automatic acknowledgement"))
        for language, phrases in _by_language(data, key).items())
    replies = _table(data, "replies", {"quote_line_starts", "quote_intro_words", "automatic_within_seconds"})
    within = replies.get("automatic_within_seconds")
    if isinstance(within, bool) or not isinstance(within, (int, float)) or within < 0:
        raise RulesError(f"[replies]: 'automatic_within_seconds' must be a number of seconds, not {within!r}")
    return RobotRules(
        out_of_office=out_of_office,
        out_of_office_bare=_by_language(data, "out_of_office_without_attachment"),
        bounce_subjects=_phrases(bounce, "subjects", "[bounce]"),
        bounce_senders=_phrases(bounce, "senders", "[bounce]"),
        bounce_sender_prefixes=_phrases(bounce, "sender_prefixes", "[bounce]"),
        address_words=words,
        address_suffixes=_phrases(addresses, "suffixes", "[addresses]"),
        address_prefixes=_phrases(addresses, "prefixes", "[addresses]"),
        address_pattern=pattern,
        text_patterns=text_patterns,
        quote_line_starts=_phrases(replies, "quote_line_starts", "[replies]"),
        quote_intro_words=_phrases(replies, "quote_intro_words", "[replies]"),
        automatic_within_seconds=float(within),
    )


def _by_language(data: dict[str, Any], key: str) -> dict[str, tuple[str, ...]]:
    table = data.get(key)
    if not isinstance(table, dict) or not table:
        raise RulesError(f"the file: the table [{key}] is missing or empty")
    return {lang: _phrases(table, lang, f"[{key}]") for lang in table}


def load_robot_rules(path: Path | str | None = None) -> RobotRules:
    """The rules in `path`; None: the rules shipped with mailbot."""
    return load_toml(path, DEFAULT_ROBOT_RULES, parse_robot_rules)
