"""What a subject line says: reply/forward, framework code, language, project and dossier reference.

Clients write `BOSA M1036 - Bon de commande – <project>` (FR) or `BOSA M1036 - Bestelbon –
<project>` (NL), and then everything else: any dash or colon, any case, with or without
accents, "M 1036", no "BOSA", reply and forward prefixes stacked by every mail client in
Belgium (`RE :`, `TR:`, `Antw:`, `AW:`, `WG:`, `RE[2]:`) and gateway tags (`[EXTERNAL]`).
The words, codes, prefixes and the reference pattern live in mailbot/rules/subjects.toml
([files] subject_rules replaces it).

When is a subject part of the process (`SubjectInfo.is_process`)? It must name the order form
(a keyword such as "Bon de commande"/"Bestelbon") AND either a framework code (M1036, ...) or
the issuer's name ("BOSA", in any order). The keyword alone is not enough: "Bon de commande
fournitures de bureau" is an ordinary purchase order, and Worldline's mailbox receives those.
The framework code alone is not enough either ("M1036 - question sur le paiement" is a question,
not an order form); such a mail still has `framework` set, and mails are also tied to a dossier
by `reference` and by the thread, so nothing is lost.

Matching runs on a folded copy of the subject (lower-case, no accents, one kind of dash, one
kind of space) whose characters map back to the original, so `project` is returned as the
client wrote it. Every pattern is linear (literals joined by bounded character classes) and the
subject is cut to `max_length` first, so a 100 KB garbage subject costs microseconds.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mailbot.errors import RulesError
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml, require

LANGUAGES = ("fr", "nl")
DEFAULT_SUBJECT_RULES = rules_file("subjects.toml")

_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63\uff0d")
# Characters trimmed around a project name: separators and quotes people put around it.
_TRIM = " -:;,|/\\\"'`«»“”‘’„‚‹›*_~·" + "".join(_DASHES)
# "Not preceded/followed by a letter or digit": a word boundary where '_' also separates
# ("Bon de commande_WL_M1036").
_B = r"(?<![^\W_])"
_E = r"(?![^\W_])"
# Between the words of a configured phrase: "bon de commande", "Bon-de-Commande", "bon_de.commande".
_JOINT = r"[ \-_.]{0,3}"


@dataclass(frozen=True)
class SubjectRules:
    max_length: int
    frameworks: tuple[str, ...]
    keywords: dict[str, tuple[str, ...]]
    issuers: tuple[str, ...]
    fillers: tuple[str, ...]
    reply_prefixes: tuple[str, ...]
    forward_prefixes: tuple[str, ...]
    tags: tuple[str, ...]
    reference_pattern: str
    # Compiled once from the fields above (see __post_init__).
    _prefix: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _framework: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _keyword: dict[str, re.Pattern[str]] = field(init=False, repr=False, compare=False)
    _filler: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _issuer: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _reference: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built here so that a SubjectRules made by hand (tests, tools) is as usable as a loaded one.
        prefixes = _alternation([*self.reply_prefixes, *self.forward_prefixes], joint=r" {0,3}")
        tags = _alternation(self.tags)
        prefix = (
            r" {0,8}(?:"
            rf"(?P<tag>[\[(] {{0,3}}{tags}{_E}[^\[\]()]{{0,60}}[\])] {{0,3}}:?)"
            rf"|(?P<word>{prefixes})\.? {{0,3}}"
            rf"(?:\[ {{0,2}}\d{{1,4}} {{0,2}}\]|\( {{0,2}}\d{{1,4}} {{0,2}}\)|\^ {{0,2}}\d{{1,4}})? {{0,3}}:"
            r")"
        )
        set_ = object.__setattr__
        set_(self, "_prefix", re.compile(prefix))
        codes = []
        for code in self.frameworks:
            parts = re.fullmatch(r"([A-Za-z]+)(\d+)", code)
            assert parts is not None  # checked by the loader
            letters, digits = parts.groups()
            codes.append(rf"({re.escape(_fold_text(letters))}[ .\-_]?{digits})")
        set_(self, "_framework", re.compile(rf"{_B}(?:{'|'.join(codes)})(?!\d)"))
        set_(self, "_keyword", {lang: re.compile(rf"{_B}{_alternation(words)}{_E}")
                                for lang, words in self.keywords.items()})
        set_(self, "_issuer", re.compile(rf"{_B}{_alternation(self.issuers)}{_E}") if self.issuers else None)
        set_(self, "_filler", re.compile(rf"{_B}{_alternation(self.fillers)}{_E}") if self.fillers else None)
        try:
            reference = re.compile(self.reference_pattern, re.IGNORECASE)
        except re.error as exc:
            raise RulesError(f"[reference]: pattern is not a valid regular expression ({exc})") from None
        if reference.groups < 1:
            raise RulesError("[reference]: pattern must have a group (the reference itself)")
        if reference.search("") is not None:
            raise RulesError("[reference]: pattern matches an empty subject")
        set_(self, "_reference", reference)


@dataclass(frozen=True)
class SubjectInfo:
    text: str  # the subject on one line (controls removed, spaces collapsed), prefixes kept
    core: str  # without reply/forward prefixes, gateway tags and the dossier reference
    is_reply: bool
    is_forward: bool
    framework: str | None  # canonical, as in the rules: "M1036"
    language: str | None  # "fr" | "nl", from the keyword found
    project: str | None  # as the client wrote it, trimmed; None when there is none
    reference: str | None  # "EPAY-2026-0042"
    names_issuer: bool = False  # the issuer ("BOSA") is named

    @property
    def is_process(self) -> bool:
        """A keyword, and a framework code or the issuer's name (see the module docstring)."""
        return self.language is not None and (self.framework is not None or self.names_issuer)


# ---------------------------------------------------------------- folding


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    if ch in _DASHES:
        return "-"
    if ch.isspace():
        return " "
    decomposed = unicodedata.normalize("NFKD", ch.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _fold(text: str) -> tuple[str, list[int]]:
    """The folded text and, for each of its characters, the index of the original character."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        f = _fold_char(ch)
        out.append(f)
        where.extend([i] * len(f))
    return "".join(out), where


def _fold_text(text: str) -> str:
    return "".join(_fold_char(ch) for ch in text)


def _compact(word: str) -> str:
    return re.sub(r"[ \-_.]", "", _fold_text(word))


def _span(where: list[int], length: int, start: int, end: int) -> tuple[int, int]:
    """A folded span [start, end) as a span of the original text."""
    a = where[start] if start < len(where) else length
    b = where[end - 1] + 1 if end > start else a
    return a, b


def _alternation(words: tuple[str, ...] | list[str], joint: str = _JOINT) -> str:
    """Configured words as one group of literals, longest first so "fwd" wins over "fw"."""
    parts = []
    for word in sorted({_fold_text(w).strip() for w in words}, key=len, reverse=True):
        pieces = [re.escape(p) for p in re.split(r"[ \-_.]+", word) if p]
        if pieces:
            parts.append(joint.join(pieces))
    return "(?:" + "|".join(parts) + ")" if parts else "(?!)"


# ---------------------------------------------------------------- cleaning


def _one_line(subject: str, max_length: int) -> str:
    """Controls (CR, LF, tabs) become spaces, invisible formatting characters go, runs of spaces
    become one; cut to max_length. Lone surrogates (undecodable bytes) become U+FFFD."""
    subject = subject[: max_length * 4]
    out = []
    for ch in subject:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            out.append(" ")
        elif cat == "Cs":
            out.append("\ufffd")
        elif cat != "Cf":  # zero-width spaces, BOM, bidi overrides, soft hyphens
            out.append(ch)
    return " ".join("".join(out).split())[:max_length].strip()


def strip_prefixes(subject: str, rules: SubjectRules) -> tuple[str, bool, bool]:
    """Remove leading reply/forward prefixes and gateway tags, however stacked.
    Returns (the rest, is_reply, is_forward)."""
    folded, where = _fold(subject)
    reply_words = {_compact(w) for w in rules.reply_prefixes}
    is_reply = is_forward = False
    pos = 0
    while m := rules._prefix.match(folded, pos):
        if m.end() == pos:  # cannot happen (every branch consumes a ':' or a bracket); be safe
            break
        if word := m.group("word"):
            if _compact(word) in reply_words:
                is_reply = True
            else:
                is_forward = True
        pos = m.end()
    start = _span(where, len(subject), pos, pos)[0] if pos else 0
    return subject[start:].strip(), is_reply, is_forward


# ---------------------------------------------------------------- parsing


def parse_subject(subject: str, rules: SubjectRules) -> SubjectInfo:
    """Read a subject line (already decoded from RFC 2047). Pure; never raises on any text."""
    if not isinstance(subject, str):
        subject = "" if subject is None else str(subject)
    text = _one_line(subject, rules.max_length)

    # The reference first: it may come before the prefixes ("[EPAY-2026-0042] RE: ...").
    folded, where = _fold(text)
    reference = None
    kept: list[str] = []
    last = 0
    for m in rules._reference.finditer(folded):
        if m.end() == m.start():
            continue
        group = next((g for g in m.groups() if g), None)
        if group and reference is None:
            reference = re.sub(r"\s+", "", group).upper()
        a, b = _span(where, len(text), m.start(), m.end())
        kept.append(text[last:a])
        last = b
    kept.append(text[last:])
    without_ref = " ".join(" ".join(kept).split())

    core, is_reply, is_forward = strip_prefixes(without_ref, rules)
    framework, language, names_issuer, project = _markers(core, rules)
    return SubjectInfo(
        text=text,
        core=core,
        is_reply=is_reply,
        is_forward=is_forward,
        framework=framework,
        language=language,
        project=project,
        reference=reference,
        names_issuer=names_issuer,
    )


def _markers(core: str, rules: SubjectRules) -> tuple[str | None, str | None, bool, str | None]:
    """Framework, language, whether the issuer is named, and the project: what is left of the
    core once the markers (issuer, framework, keyword, fillers) are cut out of it."""
    folded, where = _fold(core)
    spans: list[tuple[int, int]] = []

    framework = None
    for m in rules._framework.finditer(folded):
        if framework is None:
            assert m.lastindex is not None  # one group per framework, and one matched
            framework = rules.frameworks[m.lastindex - 1]
        spans.append((m.start(), m.end()))

    language = None
    first_keyword = len(folded) + 1
    for lang, keyword in rules._keyword.items():
        for m in keyword.finditer(folded):
            if m.start() < first_keyword:  # the first keyword in the subject tells the language
                first_keyword, language = m.start(), lang
            spans.append((m.start(), m.end()))

    names_issuer = False
    for pattern in (rules._issuer, rules._filler):
        if pattern is None:
            continue
        for m in pattern.finditer(folded):
            names_issuer = names_issuer or pattern is rules._issuer
            spans.append((m.start(), m.end()))

    project = None
    if framework is not None or language is not None:
        project = _project(core, where, sorted(spans))
    return framework, language, names_issuer, project


def _project(core: str, where: list[int], spans: list[tuple[int, int]]) -> str | None:
    """The piece after the last marker ("BOSA M1036 - Bon de commande – <project>"), else the
    one before the first ("<project> - Bestelbon"), else the longest one between markers."""
    pieces: list[str] = []
    pos = 0
    for start, end in spans:
        a, b = _span(where, len(core), start, end)
        if a >= pos:
            pieces.append(core[pos:a])
        pos = max(pos, b)
    pieces.append(core[pos:])
    pieces = [p.strip(_TRIM) for p in pieces]
    if pieces[-1]:
        return pieces[-1]
    if pieces[0]:
        return pieces[0]
    middle = [p for p in pieces[1:-1] if p]
    return max(middle, key=len) if middle else None


# ---------------------------------------------------------------- project names

# Letters NFKD does not split but people write both ways.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ı": "i"})


def project_key(name: str) -> str:
    """How project names are compared: no case, accents, punctuation or spaces at all, so
    "Ville de Namur – E-guichet" and "ville de namur e guichet" are the same project."""
    text = unicodedata.normalize("NFKD", str(name).casefold()).translate(_LIGATURES)
    return "".join(ch for ch in text if ch.isalnum() and not unicodedata.combining(ch))


# ---------------------------------------------------------------- loading


def _words(table: dict[str, Any], key: str, where: str, required: bool = True) -> tuple[str, ...]:
    if not required and key not in table:
        return ()
    words = require(table, key, list, where)
    for i, word in enumerate(words):
        if not isinstance(word, str) or not _fold_text(word).strip(" -_."):
            raise RulesError(f"{where}: {key} entry #{i + 1} must be a non-empty text, not {word!r}")
    if required and not words:
        raise RulesError(f"{where}: '{key}' must not be empty")
    return tuple(words)


def _no_extra(table: dict[str, Any], known: set[str], where: str) -> None:
    if extra := sorted(set(table) - known):
        raise RulesError(f"{where}: unknown key(s) {', '.join(extra)}")


def parse_subject_rules(data: dict[str, Any], source: str = "rules") -> SubjectRules:
    """Validate the parsed TOML; every mistake names the entry it is in."""
    try:
        return _parse(data)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


def _parse(data: dict[str, Any]) -> SubjectRules:
    _no_extra(data, {"limits", "process", "project", "prefixes", "reference"}, "the file")
    limits = require(data, "limits", dict, "the file")
    _no_extra(limits, {"max_length"}, "[limits]")
    max_length = require(limits, "max_length", int, "[limits]")
    if not 20 <= max_length <= 100_000:
        raise RulesError(f"[limits]: max_length must be between 20 and 100000, not {max_length}")

    process = require(data, "process", dict, "the file")
    _no_extra(process, {"frameworks", "keywords", "issuers"}, "[process]")
    frameworks = _words(process, "frameworks", "[process]")
    for i, code in enumerate(frameworks):
        if not re.fullmatch(r"[A-Za-z]{1,4}\d{1,8}", code):
            raise RulesError(f"[process]: frameworks entry #{i + 1} {code!r} must be letters then "
                             "digits, like 'M1036'")
    keywords_raw = require(process, "keywords", dict, "[process]")
    if unknown := sorted(set(keywords_raw) - set(LANGUAGES)):
        raise RulesError(f"[process]: keywords for unknown language(s) {', '.join(unknown)} "
                         f"(known: {', '.join(LANGUAGES)})")
    if not keywords_raw:
        raise RulesError("[process]: keywords must name at least one language")
    keywords = {lang: _words(keywords_raw, lang, "[process.keywords]") for lang in keywords_raw}
    issuers = _words(process, "issuers", "[process]", required=False)

    project = data.get("project", {})
    if not isinstance(project, dict):
        raise RulesError(f"the file: 'project' must be a table, not {project!r}")
    _no_extra(project, {"fillers"}, "[project]")
    fillers = _words(project, "fillers", "[project]", required=False)

    prefixes = require(data, "prefixes", dict, "the file")
    _no_extra(prefixes, {"reply", "forward", "tags"}, "[prefixes]")
    reply = _words(prefixes, "reply", "[prefixes]")
    forward = _words(prefixes, "forward", "[prefixes]")
    if both := sorted({_fold_text(w) for w in reply} & {_fold_text(w) for w in forward}):
        raise RulesError(f"[prefixes]: {', '.join(both)} cannot be both a reply and a forward prefix")
    tags = _words(prefixes, "tags", "[prefixes]", required=False)

    reference = require(data, "reference", dict, "the file")
    _no_extra(reference, {"pattern"}, "[reference]")
    return SubjectRules(
        max_length=max_length,
        frameworks=tuple(code.upper() for code in frameworks),
        keywords=keywords,
        issuers=issuers,
        fillers=fillers,
        reply_prefixes=reply,
        forward_prefixes=forward,
        tags=tags,
        reference_pattern=require(reference, "pattern", str, "[reference]"),
    )


def load_subject_rules(path: Path | str | None = None) -> SubjectRules:
    """The rules in `path`; None: the rules shipped with mailbot."""
    return load_toml(path, DEFAULT_SUBJECT_RULES, parse_subject_rules)
