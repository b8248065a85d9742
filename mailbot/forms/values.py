"""Normalise and check one cell value, as people really type it in Excel or LibreOffice.

Pure functions. Each check takes the cell's value (str, int, float, bool, date or datetime as
openpyxl gives it) and its parameters, and returns the normalised value or raises
`InvalidValue`. Empty cells never reach a check.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban as std_iban
from stdnum.be import vat as be_vat
from stdnum.exceptions import ValidationError as StdnumError

CellValue = str | int | float | bool | dt.date | dt.datetime


class InvalidValue(ValueError):
    """The value is there but fails its check."""


_SPACES = re.compile(r"\s+")


def clean_text(value: CellValue) -> str:
    """The value as text: numbers without a spurious `.0`, spaces (also non-breaking) folded."""
    if isinstance(value, bool):
        return "Oui" if value else "Non"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, dt.datetime):
        value = value.date() if value.time() == dt.time() else value
    if isinstance(value, dt.date):
        return value.isoformat()
    text = unicodedata.normalize("NFKC", str(value)).replace("\u200b", "")
    return _SPACES.sub(" ", text).strip()


def is_empty(value: CellValue | None) -> bool:
    return value is None or (isinstance(value, str) and clean_text(value) == "")


def _fold(text: str) -> str:
    """Lower case without accents, for comparing words people type."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).strip()


def _whole_number(value: CellValue) -> int | None:
    """A number typed as a number (int or integral float), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _digits_only(text: str) -> str:
    return re.sub(r"[\s.\-/]", "", text)


# --- the checks ---------------------------------------------------------------------------

def check_text(value: CellValue) -> str:
    text = clean_text(value)
    if not text:
        raise InvalidValue("empty")
    return text


_YES = {"oui", "ja", "yes", "y", "o", "j", "true", "vrai", "waar", "1", "x"}
_NO = {"non", "nee", "neen", "no", "n", "false", "faux", "onwaar", "0"}


def check_yes_no(value: CellValue) -> bool:
    if isinstance(value, bool):
        return value
    word = _fold(clean_text(value)).rstrip(".!")
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise InvalidValue("not yes or no")


_MARKS = {"x", "✓", "✔", "☑", "✅", "v", "oui", "ja", "yes", "1", "true", "vrai", "waar", "*"}
_NO_MARKS = {"non", "nee", "neen", "no", "0", "-", "false", "faux", "onwaar"}


def check_mark(value: CellValue) -> bool:
    if isinstance(value, bool):
        return value
    word = _fold(clean_text(value))
    if word in _MARKS:
        return True
    if word in _NO_MARKS:
        return False
    raise InvalidValue("not a mark")


_DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y/%m/%d", "%d/%m/%y",
                 "%d-%m-%y", "%d.%m.%y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
                 "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")
_EXCEL_EPOCH = dt.date(1899, 12, 30)


def check_date(value: CellValue) -> str:
    """A real date, an Excel serial number, or text in the Belgian day-first forms; ISO out."""
    if isinstance(value, dt.datetime):
        day = value.date()
    elif isinstance(value, dt.date):
        day = value
    elif (serial := _whole_number(value)) is not None:
        # A date cell whose number format was lost: an Excel serial day number.
        if not 36526 <= serial <= 73415:  # 2000-01-01 .. 2100-12-31
            raise InvalidValue("number is not a date")
        day = _EXCEL_EPOCH + dt.timedelta(days=serial)
    else:
        text = clean_text(value).replace(" / ", "/")
        for fmt in _DATE_FORMATS:
            try:
                day = dt.datetime.strptime(text, fmt).date()  # noqa: DTZ007 - only the date is kept
                break
            except ValueError:
                continue
        else:
            raise InvalidValue("not a date")
    if not 2000 <= day.year <= 2100:
        raise InvalidValue("date out of range")
    return day.isoformat()


def _enterprise_digits(value: CellValue) -> str:
    number = _whole_number(value)
    text = str(number) if number is not None else clean_text(value)
    text = _digits_only(text).upper()
    if text.startswith("BE"):
        text = text[2:]
    if len(text) == 9 and text.isdigit():
        text = "0" + text  # typed as a number: the leading zero was lost
    return text


def _format_enterprise(digits: str) -> str:
    return f"{digits[:4]}.{digits[4:7]}.{digits[7:]}"


def check_enterprise_number(value: CellValue) -> str:
    digits = _enterprise_digits(value)
    if not (len(digits) == 10 and digits.isdigit() and digits[0] in "01"):
        raise InvalidValue("not 10 digits starting with 0 or 1")
    if 97 - int(digits[:8]) % 97 != int(digits[8:]):
        raise InvalidValue("check digits do not match")
    return _format_enterprise(digits)


def check_vat_be(value: CellValue) -> str:
    """A Belgian VAT number: BE and the enterprise number (the BE may be left out)."""
    text = clean_text(value).upper().replace(" ", "")
    if text[:2].isalpha() and not text.startswith("BE"):
        raise InvalidValue("not a Belgian VAT number")
    try:
        digits = be_vat.validate(_enterprise_digits(text))
    except StdnumError as exc:
        raise InvalidValue("not a valid Belgian VAT number") from exc
    return "BE" + _format_enterprise(digits)


def check_postcode_be(value: CellValue) -> int:
    number = _whole_number(value)
    if number is None:
        text = clean_text(value).replace(" ", "")
        if not text.isdigit():
            raise InvalidValue("not a number")
        number = int(text)
    if not 1000 <= number <= 9999:
        raise InvalidValue("not between 1000 and 9999")
    return number


def check_email(value: CellValue) -> str:
    text = clean_text(value)
    if text.lower().startswith("mailto:"):
        text = text[7:]
    try:
        # Syntax only: no DNS, so it is fast and works off-line.
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(str(exc)) from exc


def check_phone(value: CellValue) -> str:
    number = _whole_number(value)
    candidates: list[str]
    if number is not None:
        # Typed as a number: the leading 0, 00 or + was lost (32475123456, 475123456).
        digits = str(number)
        candidates = [digits, "+" + digits, "0" + digits]
    else:
        text = clean_text(value)
        if len(re.sub(r"\D", "", text)) > 17:
            raise InvalidValue("too many digits")
        candidates = [text]
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, "BE")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidValue("not a valid phone number")


def check_https_url(value: CellValue) -> str:
    text = clean_text(value)
    if " " in text:
        raise InvalidValue("contains spaces")
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError as exc:
        raise InvalidValue("not a URL") from exc
    if parts.scheme.lower() != "https" or not host or "." not in host.strip("."):
        raise InvalidValue("not an https URL with a host")
    return text


def check_choice(value: CellValue, choices: list[str]) -> str:
    wanted = _SPACES.sub(" ", _fold(clean_text(value)))
    for choice in choices:
        if _SPACES.sub(" ", _fold(choice)) == wanted:
            return choice
    raise InvalidValue("not one of the choices")


def check_digits(value: CellValue, length: int) -> str:
    number = _whole_number(value)
    if number is not None and number >= 0:
        digits = str(number).zfill(length)  # typed as a number: leading zeros were lost
    else:
        digits = _digits_only(clean_text(value))
    if len(digits) != length or not digits.isdigit():
        raise InvalidValue(f"not {length} digits")
    return digits


def check_iban(value: CellValue) -> str:
    try:
        return std_iban.format(std_iban.validate(clean_text(value)))
    except StdnumError as exc:
        raise InvalidValue("not a valid IBAN") from exc


_GROUPED = re.compile(r"^\d{1,3}([.,' ]\d{3})+$")


def _parse_number(value: CellValue) -> float:
    """A number typed as a number or as text, with Belgian or English separators and a currency."""
    if isinstance(value, bool):
        raise InvalidValue("not a number")
    if isinstance(value, (int, float)):
        return float(value)
    text = clean_text(value)
    text = re.sub(r"(?i)\s*(eur|euros?|€)\s*", "", text).replace(" ", "").replace("'", "")
    if not text:
        raise InvalidValue("not a number")
    if _GROUPED.match(text) and (text.count(".") + text.count(",") > 1 or "." in text):
        # 1.500.000 or 1,500,000 or 150.000: separators of thousands (Belgian 150.000).
        text = re.sub(r"[.,]", "", text)
    elif "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        text = text.replace(thousands, "").replace(decimal, ".")
    else:
        text = text.replace(",", ".")
    try:
        number = float(text)
    except ValueError as exc:
        raise InvalidValue("not a number") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidValue("not a number")
    return number


def check_whole_positive(value: CellValue) -> int:
    number = _parse_number(value)
    if not number.is_integer() or number <= 0:
        raise InvalidValue("not a whole number above zero")
    return int(number)


def check_number_positive(value: CellValue) -> int | float:
    number = _parse_number(value)
    if number <= 0:
        raise InvalidValue("not above zero")
    return int(number) if number.is_integer() else round(number, 2)


Check = Callable[..., Any]

CHECKS: Mapping[str, Check] = {
    "text": check_text,
    "yes_no": check_yes_no,
    "date": check_date,
    "enterprise_number": check_enterprise_number,
    "vat_be": check_vat_be,
    "postcode_be": check_postcode_be,
    "email": check_email,
    "phone": check_phone,
    "https_url": check_https_url,
    "choice": check_choice,
    "digits": check_digits,
    "mark": check_mark,
    "iban": check_iban,
    "whole_positive": check_whole_positive,
    "number_positive": check_number_positive,
}

# Parameters each check needs from the rules file, with their type.
CHECK_PARAMS: Mapping[str, Mapping[str, type]] = {
    "choice": {"choices": list},
    "digits": {"length": int},
}
