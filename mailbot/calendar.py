"""Belgian business days and the deadlines counted in them.

A business day is Monday to Friday minus the legal public holidays (the `holidays` package,
country "BE") minus the closing days a calendar adds in mailbot/rules/calendars.toml or the
file [files] calendars names ("federal": 2 and 15 November, 26 December, bridge days).
Counting follows Belgian practice: the day of receipt does not count, and a deadline of N
business days is met until the end of the N-th business day after it, in the process's time
zone (process.timezone, passed in; the holidays stay Belgian whatever the zone).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from mailbot.errors import RulesError
from mailbot.resources import rules_file
from mailbot.tomlfile import load_toml

DEFAULT_CALENDARS = rules_file("calendars.toml")
_WEEKEND = {5: "Saturday", 6: "Sunday"}
# A calendar that closes more than a year in a row is a rules mistake, not a calendar: stop
# instead of looping for ever.
_MAX_CLOSED_RUN = 400


@lru_cache(maxsize=512)
def legal_holidays(country: str, year: int) -> Mapping[dt.date, str]:
    """The legal public holidays of one year, with their English names. Built once per year:
    constructing `holidays.BE` is slow and deadlines are counted for every dossier."""
    table = holidays.country_holidays(country, years=year, language="en_US")
    return MappingProxyType(dict(table))


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    yearly: frozenset[tuple[int, int]] = frozenset()  # (month, day) closed every year
    dates: frozenset[dt.date] = frozenset()  # closed once
    country: str = "BE"
    description: str = ""
    # year -> the weekdays of that year that are closed; filled on first use.
    _closed: dict[int, frozenset[dt.date]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def _closed_weekdays(self, year: int) -> frozenset[dt.date]:
        closed = self._closed.get(year)
        if closed is None:
            days = set(legal_holidays(self.country, year))
            days.update(d for d in self.dates if d.year == year)
            for month, day in self.yearly:
                try:
                    days.add(dt.date(year, month, day))
                except ValueError:  # 02-29 outside leap years
                    pass
            closed = self._closed[year] = frozenset(d for d in days if d.weekday() < 5)
        return closed

    def is_business_day(self, day: dt.date) -> bool:
        _check_date(day)
        return day.weekday() < 5 and day not in self._closed_weekdays(day.year)

    def closing_reason(self, day: dt.date) -> str | None:
        """Why the day is not a business day: a legal holiday's name first (it says the most),
        then "Saturday"/"Sunday", then "<calendar> closing day"; None on a business day."""
        _check_date(day)
        if name := legal_holidays(self.country, day.year).get(day):
            return name
        if day.weekday() in _WEEKEND:
            return _WEEKEND[day.weekday()]
        if day in self._closed_weekdays(day.year):
            return f"{self.name} closing day"
        return None

    def add_business_days(self, day: dt.date, n: int) -> dt.date:
        """The n-th business day strictly after `day` (`day` itself for n == 0)."""
        if n < 0:
            raise ValueError(f"add_business_days counts forward: n must be >= 0, not {n}")
        current = day
        for _ in range(n):
            current = self._step(current, 1)
        return current

    def next_business_day(self, day: dt.date) -> dt.date:
        return self._step(day, 1)

    def previous_business_day(self, day: dt.date) -> dt.date:
        return self._step(day, -1)

    def business_days_between(self, start: dt.date, end: dt.date) -> int:
        """Business days in (start, end]; negative when end is before start."""
        _check_date(start)
        _check_date(end)
        if end < start:
            return -self.business_days_between(end, start)
        count = 0
        day = start
        one = dt.timedelta(days=1)
        while day < end:
            day += one
            count += self.is_business_day(day)
        return count

    def _step(self, day: dt.date, direction: int) -> dt.date:
        _check_date(day)
        delta = dt.timedelta(days=direction)
        for _ in range(_MAX_CLOSED_RUN):
            day += delta
            if self.is_business_day(day):
                return day
        raise RulesError(f"calendar '{self.name}': no business day in {_MAX_CLOSED_RUN} days "
                         f"from {day.isoformat()}")


def _check_date(day: object) -> None:
    # A datetime is a date too, but never equal to one: it would silently miss every holiday.
    if isinstance(day, dt.datetime) or not isinstance(day, dt.date):
        raise TypeError(f"expected a date, not {type(day).__name__} (convert to the local time first)")


def _aware(moment: dt.datetime, what: str) -> None:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, not {moment!r}")


# ---------------------------------------------------------------- deadlines


def due_date(received_at: dt.datetime, days: int, calendar: BusinessCalendar, zone: ZoneInfo) -> dt.date:
    """The last day a deadline of `days` business days is met, for a mail received at
    `received_at`: the day of receipt is the date in `zone`, and it does not count."""
    _aware(received_at, "received_at")
    return calendar.add_business_days(received_at.astimezone(zone).date(), days)


def deadline_end(due: dt.date, zone: ZoneInfo) -> dt.datetime:
    """The moment the deadline passes: the next day's 00:00 in `zone`, as an aware UTC datetime."""
    _check_date(due)
    midnight = dt.datetime.combine(due + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return midnight.astimezone(dt.timezone.utc)


def is_overdue(due: dt.date, now: dt.datetime, zone: ZoneInfo) -> bool:
    _aware(now, "now")
    return now >= deadline_end(due, zone)


# ---------------------------------------------------------------- loading

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_YEARLY = re.compile(r"(\d{2})-(\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _yearly(entry: Any, where: str, index: int) -> tuple[int, int]:
    bad = RulesError(f"{where}: yearly entry #{index + 1} {entry!r} is not a day of the year "
                     "written MM-DD, like \"11-15\"")
    if not isinstance(entry, str) or not (m := _YEARLY.fullmatch(entry.strip())):
        raise bad
    month, day = int(m[1]), int(m[2])
    try:
        dt.date(2000, month, day)  # a leap year: 02-29 is a day of the year
    except ValueError:
        raise bad from None
    return month, day


def _one_off(entry: Any, where: str, index: int) -> dt.date:
    # TOML has dates of its own: accept 2026-05-15 as well as "2026-05-15".
    if isinstance(entry, dt.date) and not isinstance(entry, dt.datetime):
        return entry
    if isinstance(entry, str) and _DATE.fullmatch(entry.strip()):
        try:
            return dt.date.fromisoformat(entry.strip())
        except ValueError:
            pass
    raise RulesError(f"{where}: dates entry #{index + 1} {entry!r} is not a date written "
                     "YYYY-MM-DD, like \"2026-05-15\"")


def _list(table: dict[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise RulesError(f"{where}: '{key}' must be a list, not {value!r}")
    return value


def _calendar(name: str, raw: Any, country: str) -> BusinessCalendar:
    where = f"calendar '{name}'"
    if not _NAME.fullmatch(name):
        raise RulesError(f"{where}: a name is lower-case letters, digits, '-' or '_'")
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a table, not {raw!r}")
    if extra := sorted(set(raw) - {"description", "yearly", "dates"}):
        raise RulesError(f"{where}: unknown key(s) {', '.join(extra)} (known: description, yearly, dates)")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RulesError(f"{where}: 'description' must be a text, not {description!r}")
    yearly = frozenset(_yearly(e, where, i) for i, e in enumerate(_list(raw, "yearly", where)))
    dates = frozenset(_one_off(e, where, i) for i, e in enumerate(_list(raw, "dates", where)))
    return BusinessCalendar(name, yearly, dates, country, description)


def parse_calendars(data: dict[str, Any], source: str = "calendars") -> dict[str, BusinessCalendar]:
    """Validate the parsed TOML; every mistake names the calendar and the entry it is in."""
    try:
        return _parse(data)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


def _parse(data: dict[str, Any]) -> dict[str, BusinessCalendar]:
    if extra := sorted(set(data) - {"country", "calendars"}):
        raise RulesError(f"the file: unknown key(s) {', '.join(extra)} (known: country, calendars)")
    country = data.get("country", "BE")
    if not isinstance(country, str) or country not in holidays.list_supported_countries():
        raise RulesError(f"the file: country {country!r} is not a country the holidays package knows")
    calendars = data.get("calendars")
    if not isinstance(calendars, dict) or not calendars:
        raise RulesError("the file: [calendars.<name>] tables are missing")
    return {name: _calendar(name, raw, country) for name, raw in calendars.items()}


def load_calendars(path: Path | str | None = None) -> dict[str, BusinessCalendar]:
    """The calendars in `path`; None: the calendars shipped with mailbot."""
    return load_toml(path, DEFAULT_CALENDARS, parse_calendars, "calendars file")
