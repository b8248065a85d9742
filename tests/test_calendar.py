"""Business days and deadlines, on the Belgian holidays and the federal closing days."""

import datetime as dt
import tomllib
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from mailbot import calendar as cal
from mailbot.calendar import (
    DEFAULT_CALENDARS,
    BusinessCalendar,
    deadline_end,
    due_date,
    is_overdue,
    load_calendars,
    parse_calendars,
)
from mailbot.errors import RulesError

BRUSSELS = ZoneInfo("Europe/Brussels")  # the process's default zone (process.timezone)

D = dt.date
UTC = dt.timezone.utc
# Tests of the counting rules use their own calendars: the shipped file's bridge days change.
PUBLIC = BusinessCalendar("public")
FEDERAL = BusinessCalendar("federal", yearly=frozenset({(11, 2), (11, 15), (12, 26)}),
                           dates=frozenset({D(2026, 5, 15)}))


def brussels(*args):
    return dt.datetime(*args, tzinfo=BRUSSELS)


# ---------------------------------------------------------------- which days are closed


@pytest.mark.parametrize("day, reason", [
    (D(2026, 1, 1), "New Year's Day"),
    (D(2027, 3, 29), "Easter Monday"),
    (D(2026, 4, 6), "Easter Monday"),
    (D(2026, 5, 1), "Labor Day"),
    (D(2026, 5, 14), "Ascension Day"),
    (D(2026, 5, 25), "Pentecost Monday"),  # Whit Monday
    (D(2026, 7, 21), "National Day"),
    (D(2025, 8, 15), "Assumption Day"),
    (D(2027, 11, 1), "All Saints' Day"),
    (D(2027, 11, 11), "Armistice Day"),
    (D(2026, 12, 25), "Christmas Day"),
    (D(2026, 8, 15), "Assumption Day"),  # a Saturday: the holiday's name says more
    (D(2026, 5, 16), "Saturday"),
    (D(2026, 5, 17), "Sunday"),
])
def test_legal_holidays_and_weekends_close_every_calendar(day, reason):
    for calendar in (PUBLIC, FEDERAL):
        assert not calendar.is_business_day(day)
        assert calendar.closing_reason(day) == reason


@pytest.mark.parametrize("day", [D(2026, 11, 2), D(2028, 11, 2), D(2027, 11, 15), D(2025, 12, 26),
                                 D(2028, 12, 26), D(2026, 5, 15)])
def test_federal_closing_days_only_on_federal(day):
    assert day.weekday() < 5
    assert PUBLIC.is_business_day(day)
    assert PUBLIC.closing_reason(day) is None
    assert not FEDERAL.is_business_day(day)
    assert FEDERAL.closing_reason(day) == "federal closing day"


def test_yearly_closing_on_a_weekend_is_a_weekend():
    assert D(2026, 11, 15).weekday() == 6
    assert FEDERAL.closing_reason(D(2026, 11, 15)) == "Sunday"


def test_bridge_day_is_one_year_only():
    assert not FEDERAL.is_business_day(D(2026, 5, 15))
    assert FEDERAL.is_business_day(D(2026, 5, 15).replace(year=2025))  # a Thursday, open


def test_ordinary_days_are_open():
    for day in (D(2026, 3, 3), D(2026, 11, 3), D(2026, 12, 28)):
        assert PUBLIC.is_business_day(day) and FEDERAL.is_business_day(day)
        assert FEDERAL.closing_reason(day) is None


def test_datetime_is_refused_where_a_date_is_meant():
    with pytest.raises(TypeError):
        PUBLIC.is_business_day(dt.datetime(2026, 1, 1))


# ---------------------------------------------------------------- counting


@pytest.mark.parametrize("start, n, expected, calendar", [
    # Easter 2027: Friday 26 March, then Easter Monday 29 March is closed.
    (D(2027, 3, 26), 1, D(2027, 3, 30), PUBLIC),
    (D(2027, 3, 25), 3, D(2027, 3, 31), PUBLIC),
    # Ascension 2026 (Thursday 14 May); the federal bridge day on Friday 15 May.
    (D(2026, 5, 13), 1, D(2026, 5, 15), PUBLIC),
    (D(2026, 5, 13), 1, D(2026, 5, 18), FEDERAL),
    (D(2026, 5, 13), 3, D(2026, 5, 19), PUBLIC),
    # Whit Monday 2026: 25 May.
    (D(2026, 5, 22), 1, D(2026, 5, 26), PUBLIC),
    # 1 May 2026 is a Friday.
    (D(2026, 4, 30), 1, D(2026, 5, 4), PUBLIC),
    # 21 July 2026 is a Tuesday.
    (D(2026, 7, 20), 1, D(2026, 7, 22), PUBLIC),
    # 15 August 2025 is a Friday.
    (D(2025, 8, 14), 1, D(2025, 8, 18), PUBLIC),
    # November 2027: 1 (Mon, All Saints), 2 (federal), 11 (Thu, Armistice), 15 (Mon, federal).
    (D(2027, 10, 29), 1, D(2027, 11, 2), PUBLIC),
    (D(2027, 10, 29), 1, D(2027, 11, 3), FEDERAL),
    (D(2027, 11, 10), 1, D(2027, 11, 12), PUBLIC),
    (D(2027, 11, 12), 1, D(2027, 11, 15), PUBLIC),
    (D(2027, 11, 12), 1, D(2027, 11, 16), FEDERAL),
    # Christmas and New Year 2025-2026: 25 (Thu), 26 (Fri, federal), 1 January (Thu).
    (D(2025, 12, 24), 1, D(2025, 12, 26), PUBLIC),
    (D(2025, 12, 24), 1, D(2025, 12, 29), FEDERAL),
    (D(2025, 12, 24), 6, D(2026, 1, 5), PUBLIC),
    (D(2025, 12, 24), 6, D(2026, 1, 6), FEDERAL),
    # Weekends: received Friday, Saturday or Sunday.
    (D(2026, 3, 6), 1, D(2026, 3, 9), PUBLIC),
    (D(2026, 3, 7), 1, D(2026, 3, 9), PUBLIC),
    (D(2026, 3, 8), 1, D(2026, 3, 9), PUBLIC),
    (D(2026, 3, 7), 3, D(2026, 3, 11), PUBLIC),
    (D(2026, 3, 4), 6, D(2026, 3, 12), PUBLIC),
    # Received on a holiday: it does not count either way.
    (D(2026, 1, 1), 1, D(2026, 1, 2), PUBLIC),
    (D(2026, 1, 1), 3, D(2026, 1, 6), PUBLIC),
    (D(2027, 3, 29), 1, D(2027, 3, 30), PUBLIC),
    (D(2026, 3, 4), 0, D(2026, 3, 4), PUBLIC),
])
def test_add_business_days(start, n, expected, calendar):
    assert calendar.add_business_days(start, n) == expected
    assert calendar.business_days_between(start, expected) == n


def test_add_business_days_refuses_negative():
    with pytest.raises(ValueError):
        PUBLIC.add_business_days(D(2026, 3, 4), -1)


def test_next_and_previous():
    assert PUBLIC.next_business_day(D(2027, 3, 26)) == D(2027, 3, 30)
    assert PUBLIC.previous_business_day(D(2027, 3, 30)) == D(2027, 3, 26)
    assert PUBLIC.next_business_day(D(2026, 3, 4)) == D(2026, 3, 5)  # strictly after
    assert PUBLIC.previous_business_day(D(2026, 3, 9)) == D(2026, 3, 6)
    assert FEDERAL.previous_business_day(D(2026, 1, 2)) == D(2025, 12, 31)


def test_business_days_between():
    assert PUBLIC.business_days_between(D(2026, 3, 6), D(2026, 3, 6)) == 0
    assert PUBLIC.business_days_between(D(2026, 3, 6), D(2026, 3, 9)) == 1  # (Fri, Mon]
    assert PUBLIC.business_days_between(D(2026, 3, 9), D(2026, 3, 6)) == -1
    # 2026: 261 weekdays; 8 legal holidays on weekdays (15 August and 1 November are weekend days).
    assert PUBLIC.business_days_between(D(2025, 12, 31), D(2026, 12, 31)) == 253
    # Federal: also 2 November (Monday) and the bridge day 15 May; 15 Nov and 26 Dec are weekend days.
    assert FEDERAL.business_days_between(D(2025, 12, 31), D(2026, 12, 31)) == 251


def test_closed_run_is_a_rules_error_not_a_hang():
    always = BusinessCalendar("never", yearly=frozenset((m, d) for m in range(1, 13) for d in range(1, 32)
                                                        if _valid(m, d)))
    with pytest.raises(RulesError, match="calendar 'never'"):
        always.next_business_day(D(2026, 3, 4))


def _valid(month, day):
    try:
        D(2000, month, day)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)),
       st.integers(min_value=0, max_value=40),
       st.sampled_from([PUBLIC, FEDERAL]))
def test_add_business_days_properties(day, n, calendar):
    end = calendar.add_business_days(day, n)
    assert calendar.business_days_between(day, end) == n
    if n:
        assert end > day and calendar.is_business_day(end)
        # the first day that reaches n: the day before it had only n - 1
        assert calendar.business_days_between(day, end - dt.timedelta(days=1)) == n - 1
    else:
        assert end == day
    assert calendar.business_days_between(end, day) == -n


# ---------------------------------------------------------------- deadlines in local time (Brussels here)


def test_due_date_counts_from_the_brussels_day():
    # Sunday 5 July 2026 23:30 UTC is Monday 6 July 01:30 in Brussels (summer time, UTC+2).
    received = dt.datetime(2026, 7, 5, 23, 30, tzinfo=UTC)
    assert due_date(received, 1, PUBLIC, BRUSSELS) == D(2026, 7, 7)
    # Same moment in winter (UTC+1): Sunday 23:30 UTC is Monday 00:30.
    assert due_date(dt.datetime(2026, 1, 11, 23, 30, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 1, 13)
    # 22:30 UTC on a Sunday in winter is still Sunday 23:30 in Brussels.
    assert due_date(dt.datetime(2026, 1, 11, 22, 30, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 1, 12)


def test_due_date_on_dst_change_days():
    # Sunday 29 March 2026: 02:00 becomes 03:00. Sunday 25 October 2026: 03:00 becomes 02:00.
    assert due_date(dt.datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 3, 30)
    assert due_date(dt.datetime(2026, 3, 29, 22, 30, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 3, 31)  # Mon 00:30
    assert due_date(dt.datetime(2026, 10, 25, 22, 59, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 10, 26)  # Sun 23:59
    assert due_date(dt.datetime(2026, 10, 25, 23, 0, tzinfo=UTC), 1, PUBLIC, BRUSSELS) == D(2026, 10, 27)  # Mon 00:00


def test_due_date_examples_from_the_process():
    # Order form on Wednesday 13 May 2026 at 16:00: Worldline's 3 days skip Ascension.
    received = brussels(2026, 5, 13, 16, 0)
    assert due_date(received, 3, PUBLIC, BRUSSELS) == D(2026, 5, 19)
    assert due_date(received, 3, FEDERAL, BRUSSELS) == D(2026, 5, 20)
    # Signed form on Friday 24 December 2027 (Christmas is a Saturday): 6 days for the encoding.
    assert due_date(brussels(2027, 12, 24, 9, 0), 6, PUBLIC, BRUSSELS) == D(2028, 1, 3)


def test_due_date_needs_an_aware_datetime():
    with pytest.raises(ValueError):
        due_date(dt.datetime(2026, 3, 4, 10, 0), 3, PUBLIC, BRUSSELS)
    with pytest.raises(ValueError):
        is_overdue(D(2026, 3, 4), dt.datetime(2026, 3, 5), BRUSSELS)


def test_deadline_end_is_brussels_midnight():
    assert deadline_end(D(2026, 7, 7), BRUSSELS) == dt.datetime(2026, 7, 7, 22, 0, tzinfo=UTC)  # summer
    assert deadline_end(D(2026, 1, 13), BRUSSELS) == dt.datetime(2026, 1, 13, 23, 0, tzinfo=UTC)  # winter
    # The night summer time starts: 28 March ends at 00:00 on the 29th, still winter time.
    assert deadline_end(D(2026, 3, 28), BRUSSELS) == dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    # The day summer time starts ends at 00:00 on the 30th, summer time.
    assert deadline_end(D(2026, 3, 29), BRUSSELS) == dt.datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    # The day winter time comes back ends at 00:00 on 26 October, winter time.
    assert deadline_end(D(2026, 10, 25), BRUSSELS) == dt.datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    assert deadline_end(D(2026, 10, 24), BRUSSELS) == dt.datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    assert deadline_end(D(2026, 7, 7), BRUSSELS).utcoffset() == dt.timedelta(0)


def test_is_overdue_at_brussels_midnight():
    due = D(2026, 7, 7)
    assert not is_overdue(due, brussels(2026, 7, 7, 23, 59, 59), BRUSSELS)
    assert is_overdue(due, brussels(2026, 7, 8, 0, 0), BRUSSELS)
    assert not is_overdue(due, dt.datetime(2026, 7, 7, 21, 59, tzinfo=UTC), BRUSSELS)
    assert is_overdue(due, dt.datetime(2026, 7, 7, 22, 0, tzinfo=UTC), BRUSSELS)
    assert not is_overdue(due, brussels(2026, 7, 1, 12, 0), BRUSSELS)


# ---------------------------------------------------------------- speed


def test_holidays_are_built_once_per_year():
    cal.legal_holidays.cache_clear()
    fresh = BusinessCalendar("public")
    for offset in range(0, 365, 3):
        fresh.is_business_day(D(2031, 1, 1) + dt.timedelta(offset))
        PUBLIC.closing_reason(D(2031, 1, 1) + dt.timedelta(offset))
    info = cal.legal_holidays.cache_info()
    assert info.misses == 1


# ---------------------------------------------------------------- the rules file


def _data():
    return tomllib.loads(DEFAULT_CALENDARS.read_text(encoding="utf-8"))


def test_shipped_calendars():
    calendars = load_calendars()
    assert set(calendars) >= {"public", "federal"}
    assert calendars["public"].yearly == frozenset() and calendars["public"].dates == frozenset()
    assert calendars["federal"].yearly == {(11, 2), (11, 15), (12, 26)}
    assert not calendars["federal"].is_business_day(D(2027, 11, 2))
    assert calendars["public"].is_business_day(D(2027, 11, 2))


def test_toml_dates_and_strings(tmp_path):
    path = tmp_path / "calendars.toml"
    path.write_text('[calendars.bosa]\nyearly = ["12-24"]\ndates = ["2027-05-07", 2027-11-12]\n',
                    encoding="utf-8")
    bosa = load_calendars(path)["bosa"]
    assert bosa.dates == {D(2027, 5, 7), D(2027, 11, 12)}
    assert bosa.country == "BE"
    # Ascension 2027 is Thursday 6 May, bridge on Friday 7 May.
    assert bosa.add_business_days(D(2027, 5, 5), 1) == D(2027, 5, 10)
    assert bosa.closing_reason(D(2027, 12, 24)) == "bosa closing day"


def test_leap_day_closing():
    leap = BusinessCalendar("leap", yearly=frozenset({(2, 29)}))
    assert not leap.is_business_day(D(2028, 2, 29))  # a Tuesday
    assert leap.is_business_day(D(2027, 3, 1))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["calendars"]["federal"].update(yearly=["11-02", "11-31"]),
     "calendar 'federal': yearly entry #2 '11-31'"),
    (lambda d: d["calendars"]["federal"].update(yearly=["2-11"]), "calendar 'federal': yearly entry #1"),
    (lambda d: d["calendars"]["federal"].update(yearly=[1102]), "yearly entry #1 1102"),
    (lambda d: d["calendars"]["federal"].update(dates=["2026-05-15", "15/05/2026"]),
     "calendar 'federal': dates entry #2 '15/05/2026'"),
    (lambda d: d["calendars"]["federal"].update(dates=["2026-02-30"]), "dates entry #1 '2026-02-30'"),
    (lambda d: d["calendars"]["federal"].update(dates="2026-05-15"), "'dates' must be a list"),
    (lambda d: d["calendars"]["federal"].update(bridges=["2026-05-15"]),
     "calendar 'federal': unknown key(s) bridges"),
    (lambda d: d["calendars"].update(Federal={}), "calendar 'Federal': a name is"),
    (lambda d: d.update(country="XX"), "country 'XX'"),
    (lambda d: d.pop("calendars"), "[calendars.<name>] tables are missing"),
    (lambda d: d.update(holidays=[]), "unknown key(s) holidays"),
])
def test_bad_calendars_name_the_entry(change, message):
    data = _data()
    change(data)
    with pytest.raises(RulesError) as exc:
        parse_calendars(data, "calendars.toml")
    assert str(exc.value).startswith("calendars.toml: ")
    assert message in str(exc.value)


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_calendars(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[calendars.public\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid TOML"):
        load_calendars(bad)
