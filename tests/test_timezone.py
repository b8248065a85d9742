"""process.timezone is the one clock of the bot: deadlines, sweeps, digests and the times shown to
staff follow it (the calendars, the holidays, stay Belgian). Each test runs the same moments in
two zones whose dates or hours differ, so that a zone hard-coded anywhere shows."""

import datetime as dt
import json
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from mailbot.answers.digest import digest_context
from mailbot.calendar import BusinessCalendar, deadline_end, due_date
from mailbot.config import parse_settings
from mailbot.context import Context
from mailbot.daemon import Daemon
from mailbot.errors import ConfigError
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.jobs import run_digest, run_sweep
from mailbot.pipeline import handle
from mailbot.replay import job_times
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail
from mailbot.seen import Seen
from mailbot.status import status
from mailbot.store.db import open_database
from mailbot.store.models import Deadline, OutboxMail
from mailbot.tomlfile import read_toml

UTC = dt.timezone.utc
PUBLIC = BusinessCalendar("public")
CLIENT = "marie.dubois@sambreville.be"


def settings_in(zone: str):
    data = read_toml(SANDBOX_CONFIG, "configuration file", ConfigError)
    data["process"] = {"timezone": zone}
    return parse_settings(data)


@pytest.fixture(params=["Europe/Paris", "America/New_York"])
def zone(request):
    return request.param


@pytest.fixture
def ctx(tmp_path, zone):
    c = Context.load(settings_in(zone), open_database(f"sqlite:///{tmp_path}/tz.sqlite"), max_attempts=1)
    yield c
    c.engine.dispose()


def test_an_unknown_time_zone_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"process\.timezone.*'Europe/Bruxelles'.*Europe/Brussels"):
        settings_in("Europe/Bruxelles")
    assert settings_in("America/New_York").process.zone == ZoneInfo("America/New_York")


def test_a_deadline_counts_from_the_day_of_receipt_in_the_zone():
    # Sunday 7 March 2027, 23:30 UTC: Monday 00:30 in Paris, still Sunday 18:30 in New York.
    received = dt.datetime(2027, 3, 7, 23, 30, tzinfo=UTC)
    assert due_date(received, 1, PUBLIC, ZoneInfo("Europe/Paris")) == dt.date(2027, 3, 9)
    assert due_date(received, 1, PUBLIC, ZoneInfo("America/New_York")) == dt.date(2027, 3, 8)
    assert deadline_end(dt.date(2027, 3, 8), ZoneInfo("America/New_York")) == dt.datetime(2027, 3, 9, 5, 0, tzinfo=UTC)


def test_the_scheduled_jobs_run_at_the_zones_times(ctx, zone):
    # Tuesday 12 January 2027: the digest at 08:30 local time
    start = dt.datetime(2027, 1, 12, 0, 0, tzinfo=UTC)
    jobs = list(job_times(start, start + dt.timedelta(days=1), ctx))
    digest = next(at for at, job in jobs if job == "digest")
    assert digest == dt.datetime(2027, 1, 12, 8, 30, tzinfo=ZoneInfo(zone))
    assert digest.hour == {"Europe/Paris": 7, "America/New_York": 13}[zone]  # in UTC


def test_the_daemons_scheduler_runs_in_the_zone(zone):
    settings = settings_in(zone)
    fake = SimpleNamespace(settings=settings, job=lambda name: None, retention=lambda: None)
    scheduler = Daemon.scheduler(fake)
    digest = next(j for j in scheduler.get_jobs() if j.id == "digest").trigger
    assert str(digest.timezone) == zone
    first = digest.get_next_fire_time(None, dt.datetime(2027, 1, 12, 0, 0, tzinfo=UTC))
    assert first == dt.datetime(2027, 1, 12, 8, 30, tzinfo=ZoneInfo(zone))


def form_mail(at: dt.datetime) -> Mail:
    form = fill_form("fr", complete_values("fr"), rules=load_rules())
    return Mail(at, CLIENT, ["ecom-belgium@worldline.localhost"], "BOSA M1036 - Bon de commande – E-guichet",
                "Bonjour, ci-joint notre bon de commande.", cc=["epayment@bosa.localhost"],
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id="<tz1@sambreville.be>")


def test_a_deadline_started_by_a_mail_counts_from_the_zones_day(ctx, zone):
    # Sunday 7 March 2027, 23:30 UTC: Monday in Paris, Sunday in New York
    at = dt.datetime(2027, 3, 7, 23, 30, tzinfo=UTC)
    handle(form_mail(at).delivered(), Seen("worldline"), at, ctx)
    with Session(ctx.engine) as s:
        [deadline] = s.exec(select(Deadline)).all()
    assert deadline.due == {"Europe/Paris": dt.date(2027, 3, 11), "America/New_York": dt.date(2027, 3, 10)}[zone]


def test_sweeps_digests_and_status_take_today_in_the_zone(ctx, zone):
    at = dt.datetime(2027, 3, 8, 12, 0, tzinfo=UTC)  # Monday in both zones: due Thursday 11 March
    handle(form_mail(at).delivered(), Seen("worldline"), at, ctx)
    # Thursday 11 March, 02:00 UTC: the due day in Paris (warned the day before, nothing now),
    # Wednesday evening in New York (the day before the due day: a warning)
    night = dt.datetime(2027, 3, 11, 2, 0, tzinfo=UTC)
    run_sweep(ctx, night)
    with Session(ctx.engine) as s:
        alerts = [o.purpose for o in s.exec(select(OutboxMail).where(OutboxMail.purpose != "form_complete"))]
    assert alerts == {"Europe/Paris": [], "America/New_York": ["warning"]}[zone]
    run_digest(ctx, night)
    local = night.astimezone(ZoneInfo(zone))
    with Session(ctx.engine) as s:
        [digest] = s.exec(select(OutboxMail).where(OutboxMail.purpose == "digest", OutboxMail.recipients.contains(
            "worldline"))).all()
        context = digest_context(s, "worldline", night, ctx.calendars["public"], ctx.settings.process.zone)
    assert context["date"] == local.date().isoformat()
    assert [d.reference for d in context["due_today"]] == {"Europe/Paris": ["EPAY-2027-0001"],
                                                           "America/New_York": []}[zone]
    assert f"{local:%Y-%m-%d %H:%M}" in digest.body_text and zone in digest.body_text
    report = status(ctx.engine, ctx.settings, night)
    assert len(report["deadlines_due"]) == {"Europe/Paris": 1, "America/New_York": 0}[zone]


def test_staff_notes_show_times_in_the_zone(ctx, zone):
    at = dt.datetime(2027, 3, 8, 14, 0, tzinfo=UTC)
    handle(Mail(at, "jean.inconnu@gmail.com", ["ecom-belgium@worldline.localhost"], "Une question",
                "Bonjour, une question.", message_id="<q1@gmail.com>").delivered(), Seen("worldline"), at, ctx)
    with Session(ctx.engine) as s:
        [note] = s.exec(select(OutboxMail).where(OutboxMail.purpose == "needs_human")).all()
    local = at.astimezone(ZoneInfo(zone))
    assert f"{local:%Y-%m-%d %H:%M}" in note.body_text and zone in note.body_text
    assert "Brussels" not in note.body_text and "Bruxelles" not in note.body_text
    assert json.loads(note.recipients) == ["ecom-belgium@worldline.localhost"]
