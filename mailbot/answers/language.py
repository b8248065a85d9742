"""The client's language: from the form, the subject, the body or earlier mail, in that order."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from mailbot.errors import RulesError
from mailbot.tomlfile import read_toml

DEFAULT_WORDS = Path(__file__).resolve().parents[2] / "rules" / "languages.toml"


@lru_cache(maxsize=2)
def _words(path: Path = DEFAULT_WORDS) -> dict[str, frozenset[str]]:
    data = read_toml(path, "rules file")
    try:
        return {lang: frozenset(w.casefold() for w in data[lang]) for lang in ("fr", "nl")}
    except (KeyError, TypeError) as exc:
        raise RulesError(f"{path}: {exc.__class__.__name__}: {exc}") from exc


def body_language(text: str) -> str | None:
    tokens = re.findall(r"[\w-]+", text[:4000].casefold())
    words = _words()
    fr = sum(t in words["fr"] for t in tokens)
    nl = sum(t in words["nl"] for t in tokens)
    if max(fr, nl) >= 2 and max(fr, nl) >= 2 * min(fr, nl):
        return "fr" if fr > nl else "nl"
    return None


def pick_language(*candidates: str | None) -> str | None:
    """The first known language; None means unsure (the mail then goes in both FR and NL)."""
    return next((c for c in candidates if c in ("fr", "nl")), None)
