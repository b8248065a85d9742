"""The client's language: from the form, the subject, the body or earlier mail, in that order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mailbot.errors import RulesError
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml

DEFAULT_WORDS = rules_file("languages.toml")


@dataclass(frozen=True)
class LanguageWords:
    """Words that tell a body's language (mailbot/rules/languages.toml, or [files] languages)."""
    fr: frozenset[str]
    nl: frozenset[str]


def parse_language_words(data: dict, source: str = "rules") -> LanguageWords:
    try:
        return LanguageWords(**{lang: frozenset(w.casefold() for w in data[lang]) for lang in ("fr", "nl")})
    except (KeyError, TypeError, AttributeError) as exc:
        raise RulesError(f"{source}: {exc.__class__.__name__}: {exc}") from exc


def load_language_words(path: Path | str | None = None) -> LanguageWords:
    """The words in `path`; None: the words shipped with mailbot."""
    return load_toml(path, DEFAULT_WORDS, parse_language_words)


def body_language(text: str, words: LanguageWords) -> str | None:
    tokens = re.findall(r"[\w-]+", text[:4000].casefold())
    fr = sum(t in words.fr for t in tokens)
    nl = sum(t in words.nl for t in tokens)
    if max(fr, nl) >= 2 and max(fr, nl) >= 2 * min(fr, nl):
        return "fr" if fr > nl else "nl"
    return None


def pick_language(*candidates: str | None) -> str | None:
    """The first known language; None means unsure (the mail then goes in both FR and NL)."""
    return next((c for c in candidates if c in ("fr", "nl")), None)
