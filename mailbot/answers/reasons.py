"""Why a person is needed, as a code with its parameters, rendered in each team's language from
mailbot/rules/reasons.toml (or the copy [files] reasons names). Pure apart from reading the file.

The program decides on codes; the texts are data staff may change. A text never fails to
render: a placeholder the program does not fill stays as written, and an unknown code is shown
as itself with its parameters.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailbot.errors import RulesError
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml

DEFAULT_REASONS = rules_file("reasons.toml")
LANGUAGES = ("en", "fr", "nl")


@dataclass(frozen=True)
class Reason:
    """A code of reasons.toml and the values its texts name in {braces}."""
    code: str
    params: Mapping[str, str] = field(default_factory=dict)


class _Kept(dict):
    """format_map's mapping: a placeholder with no value stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class ReasonTexts:
    texts: Mapping[str, Mapping[str, str]]  # code -> language -> text

    def say(self, reason: Reason | str, language: str) -> str:
        """The reason in `language` (English for a language the file lacks); a text already
        written (a str) is shown as it is."""
        if isinstance(reason, str):
            return reason
        by_language = self.texts.get(reason.code)
        if by_language is None:
            params = ", ".join(f"{k}: {v}" for k, v in reason.params.items())
            return f"{reason.code} ({params})" if params else reason.code
        text = by_language.get(language) or by_language["en"]
        return string.Formatter().vformat(text, (), _Kept(reason.params))

    def english(self, reason: Reason | str) -> str:
        """For the records (events, the outbox's detail): the English text."""
        return self.say(reason, "en")


def _fields(text: str, where: str) -> set[str]:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:  # a lone "{" or "}"
        raise RulesError(f"{where}: {exc} (write {{{{ and }}}} for a brace)") from None
    if "" in names or any(not n.isidentifier() for n in names):
        raise RulesError(f"{where}: a placeholder is a name in braces, like {{detail}}")
    return names


def parse_reasons(data: dict[str, Any], source: str = "reasons") -> ReasonTexts:
    """Every code has a text in each language, naming the same placeholders."""
    texts: dict[str, dict[str, str]] = {}
    for code, entry in data.items():
        where = f"{source}: [{code}]"
        if not isinstance(entry, dict):
            raise RulesError(f"{where} must be a table with en, fr and nl")
        if missing := [lang for lang in LANGUAGES if not isinstance(entry.get(lang), str) or not entry[lang].strip()]:
            raise RulesError(f"{where}: no text for {', '.join(missing)}")
        if extra := sorted(set(entry) - set(LANGUAGES)):
            raise RulesError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(LANGUAGES)})")
        names = {lang: _fields(entry[lang], f"{where} {lang}") for lang in LANGUAGES}
        for lang in LANGUAGES[1:]:
            if names[lang] != names["en"]:
                odd = sorted(names[lang] ^ names["en"])
                raise RulesError(f"{where}: {lang} and en name different placeholders "
                                 f"({', '.join('{' + n + '}' for n in odd)}); keep the same in every language")
        texts[code] = {lang: entry[lang] for lang in LANGUAGES}
    return ReasonTexts(texts)


def load_reasons(path: Path | str | None = None) -> ReasonTexts:
    """The texts in `path`, which must have every code of the shipped file; None: the shipped texts."""
    shipped = load_toml(None, DEFAULT_REASONS, parse_reasons)
    if path is None:
        return shipped
    mine = load_toml(path, DEFAULT_REASONS, parse_reasons)
    if missing := sorted(set(shipped.texts) - set(mine.texts)):
        raise RulesError(f"{path}: the code(s) {', '.join(missing)} are missing (the program uses them; "
                         f"copy them from the shipped reasons.toml)")
    return mine
