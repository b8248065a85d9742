"""The order form's rules (mailbot/rules/order_form.toml, or [files] form_rules) as typed, validated data."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field as dc_field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from mailbot.errors import RulesError
from mailbot.forms.values import CHECK_PARAMS, CHECKS
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml, require as _require

LANGUAGES = ("fr", "nl")
DEFAULT_RULES = rules_file("order_form.toml")
_CODES = ("missing", "missing_row", "invalid", "inconsistent")

_DASHES = re.compile(r"[\u2010-\u2015\u2212\-]+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'"})


@lru_cache(maxsize=4096)  # every form repeats the same labels: fold each once
def label_key(text: str) -> str:
    """How labels are compared: no case, accents, extra or odd spaces, dash or quote kind,
    and no trailing ':' or '*' (marks people add)."""
    text = unicodedata.normalize("NFKD", str(text).casefold().translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _DASHES.sub("-", text)
    text = re.sub(r"\s*-\s*", " - ", text)
    text = " ".join(text.split())
    return text.rstrip(" :*").strip()


@dataclass(frozen=True)
class FieldRule:
    id: str
    labels: dict[str, str]
    need: str  # "mandatory" | "optional" | "conditional"
    check: str
    params: dict[str, Any] = dc_field(default_factory=dict)
    when: str | None = None  # for "conditional": the yes/no field that makes it mandatory


@dataclass(frozen=True)
class CrossRule:
    id: str
    kind: str  # "at_least_one" | "same_enterprise"
    fields: tuple[str, ...] = ()
    when: str | None = None
    replaces_missing: bool = False
    field: str | None = None
    other: str | None = None
    labels: dict[str, str] = dc_field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_uncompressed_bytes: int
    max_xml_part_bytes: int
    max_parts: int
    max_ratio: int
    max_xml_elements: int
    max_rows: int
    max_columns: int
    max_sheets: int
    min_label_share: float


@dataclass(frozen=True)
class FormRules:
    framework: str
    accepted_versions: tuple[str, ...]
    title_words: dict[str, tuple[str, ...]]
    version_words: tuple[str, ...]
    limits: Limits
    fields: tuple[FieldRule, ...]
    rules: tuple[CrossRule, ...]
    messages: dict[str, dict[str, str]]
    hints: dict[str, dict[str, str]]
    not_applicable: frozenset[str] = frozenset()  # folded words meaning "does not apply"

    def field(self, field_id: str) -> FieldRule:
        return next(f for f in self.fields if f.id == field_id)

    @cached_property
    def label_keys(self) -> dict[str, dict[str, str]]:
        """language -> folded label -> field id, as the sheet reader looks labels up."""
        return {lang: {label_key(f.labels[lang]): f.id for f in self.fields} for lang in LANGUAGES}

    def label(self, item_id: str, language: str) -> str:
        for f in self.fields:
            if f.id == item_id:
                return f.labels[language]
        for r in self.rules:
            if r.id == item_id and r.labels:
                return r.labels[language]
        return item_id


def _need(where: str, raw: Any) -> tuple[str, str | None]:
    if raw in ("mandatory", "optional"):
        return raw, None
    if isinstance(raw, str) and raw.startswith("when:") and raw[5:]:
        return "conditional", raw[5:]
    raise RulesError(f"{where}: need must be 'mandatory', 'optional' or 'when:<field>', not {raw!r}")


def _parse_field(raw: dict[str, Any], index: int) -> FieldRule:
    where = f"field #{index + 1}"
    field_id = _require(raw, "id", str, where)
    where = f"field '{field_id}'"
    labels = {lang: _require(raw, lang, str, where) for lang in LANGUAGES}
    need, when = _need(where, raw.get("need"))
    check = _require(raw, "check", str, where)
    if check not in CHECKS:
        raise RulesError(f"{where}: unknown check '{check}' (known: {', '.join(sorted(CHECKS))})")
    params = {name: _require(raw, name, kind, where) for name, kind in CHECK_PARAMS.get(check, {}).items()}
    known = {"id", "need", "check", *LANGUAGES, *params}
    if extra := sorted(set(raw) - known):
        raise RulesError(f"{where}: unknown key(s) {', '.join(extra)}")
    return FieldRule(field_id, labels, need, check, params, when)


def _parse_rule(raw: dict[str, Any], index: int) -> CrossRule:
    where = f"rule #{index + 1}"
    rule_id = _require(raw, "id", str, where)
    where = f"rule '{rule_id}'"
    kind = _require(raw, "kind", str, where)
    if kind == "at_least_one":
        fields = tuple(_require(raw, "fields", list, where))
        labels = {lang: _require(raw, lang, str, where) for lang in LANGUAGES}
        return CrossRule(rule_id, kind, fields=fields, when=raw.get("when"),
                         replaces_missing=bool(raw.get("replaces_missing", False)), labels=labels)
    if kind == "same_enterprise":
        return CrossRule(rule_id, kind, field=_require(raw, "field", str, where),
                         other=_require(raw, "other", str, where))
    raise RulesError(f"{where}: unknown kind '{kind}' (known: at_least_one, same_enterprise)")


def parse_rules(data: dict[str, Any], source: str = "rules") -> FormRules:
    """Validate the parsed TOML; every mistake names the entry it is in."""
    try:
        return _parse_rules(data)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


def _parse_rules(data: dict[str, Any]) -> FormRules:
    form = _require(data, "form", dict, "the file")
    limits_raw = _require(data, "limits", dict, "the file")
    try:
        limits = Limits(**limits_raw)
    except TypeError as exc:
        raise RulesError(f"[limits]: {exc}") from exc
    fields = tuple(_parse_field(f, i) for i, f in enumerate(_require(data, "fields", list, "the file")))
    ids = [f.id for f in fields]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        raise RulesError(f"fields: duplicate id(s) {', '.join(dupes)}")
    yes_no = {f.id for f in fields if f.check == "yes_no"}
    for f in fields:
        if f.when is not None and f.when not in yes_no:
            raise RulesError(f"field '{f.id}': 'when:{f.when}' must name a yes_no field")
    rules = tuple(_parse_rule(r, i) for i, r in enumerate(data.get("rules", [])))
    for r in rules:
        for ref in (*r.fields, r.field, r.other, r.when):
            if ref is not None and ref not in ids:
                raise RulesError(f"rule '{r.id}': unknown field '{ref}'")
    messages = _require(data, "messages", dict, "the file")
    hints = _require(data, "hints", dict, "the file")
    for lang in LANGUAGES:
        msgs = _require(messages, lang, dict, "[messages]")
        wanted = [*_CODES, *(r.id for r in rules if r.kind == "at_least_one")]
        if missing := [c for c in wanted if c not in msgs]:
            raise RulesError(f"[messages.{lang}]: missing {', '.join(missing)}")
        lang_hints = _require(hints, lang, dict, "[hints]")
        if missing := sorted({f.check for f in fields} - set(lang_hints)):
            raise RulesError(f"[hints.{lang}]: missing {', '.join(missing)}")
    title_words = _require(form, "title_words", dict, "[form]")
    if sorted(title_words) != sorted(LANGUAGES):
        raise RulesError(f"[form]: title_words must name exactly {', '.join(LANGUAGES)}")
    return FormRules(
        framework=_require(form, "framework", str, "[form]"),
        accepted_versions=tuple(_require(form, "accepted_versions", list, "[form]")),
        title_words={k: tuple(label_key(w) for w in v) for k, v in title_words.items()},
        version_words=tuple(_require(form, "version_words", list, "[form]")),
        limits=limits,
        fields=fields,
        rules=rules,
        messages=messages,
        hints=hints,
        not_applicable=frozenset(label_key(w) for w in form.get("not_applicable", [])),
    )


def load_rules(path: Path | str | None = None) -> FormRules:
    """The rules in `path`; None: the rules shipped with mailbot."""
    return load_toml(path, DEFAULT_RULES, parse_rules)
