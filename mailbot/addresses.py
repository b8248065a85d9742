"""E-mail addresses as one person: compared normalised, found and replaced in stored text (pure).

One address can be written many ways: `Marie.Dubois@Sambreville.BE`, an NFD `é` from a Mac,
a domain in punycode (`xn--…`). An erasure request must find every one of them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import idna

# An address inside free text: no spaces, brackets, quotes or separators around the "@".
_IN_TEXT = re.compile(r"""[^\s<>()\[\]{},;:"'@]+@[^\s<>()\[\]{},;:"'@]+""")


def normalise_address(text: str) -> str:
    """The address as compared: Unicode NFC, lower case, the domain's punycode decoded.
    Lower case, not casefold: casefold turns "ß" into "ss", another mailbox."""
    value = unicodedata.normalize("NFC", text.strip().strip("<>").strip())
    local, at, domain = value.rpartition("@")
    if not at:
        return unicodedata.normalize("NFC", value.lower())
    domain = domain.rstrip(".")
    try:
        domain = idna.decode(domain, uts46=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        pass  # not a valid IDN (an underscore, say): compared as written
    return unicodedata.normalize("NFC", f"{local.lower()}@{domain.lower()}")


def replace_in_text(text: str, is_target: Callable[[str], bool], replacement: str) -> tuple[str, int]:
    """`text` with every address for which `is_target` holds replaced; how many were."""
    count = 0

    def swap(match: re.Match) -> str:
        nonlocal count
        found = match.group(0).rstrip(".")
        if not is_target(found):
            return match.group(0)
        count += 1
        return replacement + match.group(0)[len(found):]

    return _IN_TEXT.sub(swap, text), count


def replace_in_json(value: Any, is_target: Callable[[str], bool], replacement: str) -> tuple[Any, int]:
    """The JSON value with the addresses in its strings (keys too) replaced; how many were."""
    if isinstance(value, str):
        return replace_in_text(value, is_target, replacement)
    if isinstance(value, list):
        out, total = [], 0
        for item in value:
            new, n = replace_in_json(item, is_target, replacement)
            out.append(new)
            total += n
        return out, total
    if isinstance(value, dict):
        out_d, total = {}, 0
        for key, item in value.items():
            new_key, k = replace_in_text(key, is_target, replacement)
            new, n = replace_in_json(item, is_target, replacement)
            out_d[new_key] = new
            total += k + n
        return out_d, total
    return value, 0


def replace_in_stored(text: str, is_target: Callable[[str], bool], replacement: str) -> tuple[str, int]:
    """A stored column: JSON (whose strings may be \\u-escaped) is walked, other text searched."""
    stripped = text.lstrip()
    if stripped[:1] in ("[", "{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, (list, dict)):
            new, n = replace_in_json(parsed, is_target, replacement)
            # Written back as the writer wrote it (the outbox escapes, the form values do not).
            return (json.dumps(new, ensure_ascii=text.isascii()) if n else text), n
    return replace_in_text(text, is_target, replacement)
