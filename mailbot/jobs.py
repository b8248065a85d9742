"""The scheduled jobs, the same for the daemon (APScheduler) and the replay (simulated clock).

What is due is derived from the database at each run, so a job missed during downtime is
made up by the next one and two runs never act twice.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlmodel import Session

from mailbot import history
from mailbot.answers.digest import digest_draft
from mailbot.answers.scheduled import alert_draft, reminder_drafts
from mailbot.context import Context
from mailbot.outbox import enqueue
from mailbot.retention import run_retention as purge
from mailbot.sweep import sweep

log = logging.getLogger("mailbot.jobs")


def run_sweep(ctx: Context, now: dt.datetime) -> None:
    """Warnings and escalations for deadlines, in one transaction with their outbox mails."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        for alert in sweep(session, now, ctx.calendars, ctx.settings.process.zone):
            draft = alert_draft(session, alert, now, ctx.settings, ctx.calendars, ctx.renderer)
            enqueue(session, draft, now, ctx.limits, shadow=ctx.settings.answers.shadow)
        session.commit()


def run_digest(ctx: Context, now: dt.datetime) -> None:
    """The morning round: client reminders, then one triage summary per team (which lists the
    dossiers imported from history once)."""
    calendar = ctx.calendars[ctx.settings.schedule.calendar]
    with Session(ctx.engine, expire_on_commit=False) as session:
        for draft in reminder_drafts(session, now, ctx.settings, calendar, ctx.renderer, ctx.history_before):
            enqueue(session, draft, now, ctx.limits, shadow=ctx.settings.answers.shadow)
        session.flush()
        for team in ("worldline", "bosa"):
            enqueue(session, digest_draft(session, team, now, ctx.settings, calendar, ctx.renderer), now, ctx.limits)
            history.mark_listed(session, team, history.to_review(session, team), now)
        session.commit()


def run_retention(ctx: Context, now: dt.datetime) -> None:
    """The personal data of dossiers closed or dormant for months is purged (mailbot/retention.py)."""
    with Session(ctx.engine, expire_on_commit=False) as session:
        report = purge(session, now, ctx.settings, apply=True)
    log.info("retention", extra={"dossiers": [due.reference for due, _ in report.dossiers],
                                 "outside_dossiers": report.outside.summary()})


JOBS = {"sweep": run_sweep, "digest": run_digest, "retention": run_retention}
