"""Open an order-form workbook safely and read its title and its labelled values.

Only the first `max_rows` x `max_columns` cells of each sheet are ever read (the workbook is
streamed in read-only mode), so a forged dimension or a huge sheet costs nothing. External
links are never loaded.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import ParseError

import openpyxl
from defusedxml import DefusedXmlException

from mailbot.errors import NotAnOrderForm, UnreadableForm, UnsafeEnvironment
from mailbot.forms.rules import LANGUAGES, FormRules, label_key
from mailbot.forms.safety import ENTITIES_REASON, check_container
from mailbot.forms.values import is_empty


def ensure_safe_xml() -> None:
    """openpyxl parses XML with defusedxml only when it is installed; refuse to run without it."""
    if not getattr(openpyxl, "DEFUSEDXML", False):
        raise UnsafeEnvironment("defusedxml is not active in openpyxl: install defusedxml before checking forms")


@dataclass(frozen=True)
class Title:
    text: str
    language: str
    version: str | None


@dataclass
class SheetContent:
    """What was read off the order-form sheet: the title and each field's raw value."""
    language: str | None
    version: str | None
    title: str | None
    values: dict[str, Any] = field(default_factory=dict)  # field id -> raw cell value (found rows)
    found: set[str] = field(default_factory=set)  # field ids whose label row exists


# What openpyxl raises on a damaged part (defusedxml's errors are ValueErrors); an out-of-range
# style or shared-string index is a LookupError or an OverflowError.
_DAMAGED = (zipfile.BadZipFile, ParseError, ValueError, TypeError, LookupError, AttributeError, ArithmeticError,
            OSError)


def read_form(data: bytes, rules: FormRules) -> SheetContent:
    """Read the order form out of workbook bytes; raise a `FormError` subclass if it is not one."""
    ensure_safe_xml()
    check_container(data, rules.limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about unsupported extensions
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except _DAMAGED as exc:
        # openpyxl re-raises what its reader hit as a ValueError "from" it: look at the cause too.
        if isinstance(exc, DefusedXmlException) or isinstance(exc.__cause__, DefusedXmlException):
            raise UnreadableForm(ENTITIES_REASON) from exc
        raise UnreadableForm(f"the workbook is damaged and cannot be opened ({type(exc).__name__})") from exc
    try:
        return _read_book(book, rules)
    except _DAMAGED as exc:
        if isinstance(exc, DefusedXmlException):
            raise UnreadableForm(ENTITIES_REASON) from exc
        raise UnreadableForm(f"the workbook's sheet is damaged and cannot be read ({type(exc).__name__})") from exc
    finally:
        book.close()


def _grid(sheet: Any, rules: FormRules) -> list[tuple[Any, ...]]:
    limits = rules.limits
    return [tuple(c.value for c in row)
            for row in sheet.iter_rows(min_row=1, max_row=limits.max_rows, min_col=1, max_col=limits.max_columns)]


def _read_book(book: Any, rules: FormRules) -> SheetContent:
    prop_title = parse_title(book.properties.title or "", rules) if book.properties else None
    best: tuple[int, SheetContent] | None = None
    for sheet in book.worksheets[: rules.limits.max_sheets]:
        grid = _grid(sheet, rules)
        title = next((t for row in grid[:20] for cell in row if isinstance(cell, str)
                      and (t := parse_title(cell, rules))), None) or prop_title
        content = _locate(grid, title, rules)
        score = len(content.found) + (1000 if title else 0)
        if best is None or score > best[0]:
            best = (score, content)
        if content.title is not None and len(content.found) == len(rules.fields):
            break  # no other sheet can do better than the title and every label
    fields_total = len(rules.fields)
    if best is None or (best[1].title is None and len(best[1].found) < rules.limits.min_label_share * fields_total):
        raise NotAnOrderForm(
            f"the workbook has neither the title nor the labels of the {rules.framework} order form")
    return best[1]


_WORD = r"(?<![a-z])"


def parse_title(text: str, rules: FormRules) -> Title | None:
    """`Bon de commande – ePayment BOSA M1036 – Worldline – Version 2.2` -> fr, 2.2."""
    key = label_key(text)
    if rules.framework.casefold() not in key:
        return None
    language = next((lang for lang in LANGUAGES if any(w in key for w in rules.title_words[lang])), None)
    if language is None:
        return None
    words = "|".join(re.escape(w.casefold()) for w in rules.version_words)
    match = re.search(rf"{_WORD}(?:{words})\.?\s*(\d+(?:[.,]\d+)*)\s*$", key) or \
        re.search(rf"{_WORD}(?:{words})\.?\s*(\d+(?:[.,]\d+)*)", key)
    version = match.group(1).replace(",", ".") if match else None
    return Title(text=" ".join(text.split()), language=language, version=version)


def _locate(grid: list[tuple[Any, ...]], title: Title | None, rules: FormRules) -> SheetContent:
    """Find each field by its label (any row, any column) and take the value to its right."""
    keys = rules.label_keys
    hits: dict[str, dict[str, Any]] = {lang: {} for lang in LANGUAGES}
    for row in grid:
        for col, cell in enumerate(row):
            if not isinstance(cell, str) or len(cell) > 200:
                continue
            key = label_key(cell)
            for lang in LANGUAGES:
                field_id = keys[lang].get(key)
                if field_id is not None and field_id not in hits[lang]:
                    hits[lang][field_id] = _value_right_of(row, col)
    if title is not None:
        language = title.language
    else:
        language = max(LANGUAGES, key=lambda lang: len(hits[lang]))
    found = hits[language]
    # Labels that read the same in both languages (Bancontact, Visa...) are found either way.
    return SheetContent(
        language=language,
        version=title.version if title else None,
        title=title.text if title else None,
        values={k: v for k, v in found.items() if not is_empty(v)},
        found=set(found),
    )


def _value_right_of(row: tuple[Any, ...], col: int) -> Any:
    """The value of a label: the next cell, or the first filled one of the two after it
    (a value typed one cell too far right)."""
    for value in row[col + 1: col + 4]:
        if not is_empty(value):
            return value
    return None
