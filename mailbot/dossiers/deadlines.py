"""Deadlines live in the database, derived from events: start, pause, meet, and find due ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from mailbot.calendar import BusinessCalendar, due_date
from mailbot.config import Settings
from mailbot.store.models import Deadline, Dossier, Event

# Deadlines still owed: running ("open"), or run out before the bot's first start ("imported",
# mailbot/history.py: never alerted, but the mail that meets one meets it).
OWED = ("open", "imported")


def open_deadline(session: Session, dossier: Dossier, name: str) -> Deadline | None:
    return session.exec(select(Deadline).where(Deadline.dossier_id == dossier.id, Deadline.name == name,
                                               col(Deadline.state).in_(OWED))).first()


def start(session: Session, dossier: Dossier, name: str, at: dt.datetime, settings: Settings,
          calendars: dict[str, BusinessCalendar], message_pk: int | None) -> Deadline | None:
    """Start the clock unless it already runs."""
    if open_deadline(session, dossier, name) is not None:
        return None
    rule = getattr(settings.deadlines, name)
    due = due_date(at, rule.days, calendars[rule.calendar], settings.process.zone)
    assert dossier.id is not None  # flushed when it was opened
    deadline = Deadline(dossier_id=dossier.id, name=name, party=rule.party, calendar=rule.calendar,
                        started_at=at, due=due)
    session.add(deadline)
    session.add(Event(dossier_id=dossier.id, at=at, kind="deadline_started", message_pk=message_pk,
                      detail=f"{name}: {rule.days} business days, due {due.isoformat()} ({rule.calendar} calendar)"))
    return deadline


def close(session: Session, dossier: Dossier, name: str, state: str, at: dt.datetime,
          message_pk: int | None, why: str) -> Deadline | None:
    """Meet (state "met") or stop (state "paused") the running clock, if any."""
    deadline = open_deadline(session, dossier, name)
    if deadline is None:
        return None
    deadline.state = state
    deadline.closed_at = at
    session.add(deadline)
    late = state == "met" and at.date() > deadline.due
    assert dossier.id is not None  # flushed when it was opened
    session.add(Event(dossier_id=dossier.id, at=at, kind=f"deadline_{state}", message_pk=message_pk,
                      detail=f"{name}: {why}" + (" (late)" if late else "")))
    return deadline


@dataclass(frozen=True)
class DueItem:
    deadline: Deadline
    dossier: Dossier


def open_deadlines(session: Session, due_until: dt.date) -> list[DueItem]:
    """Open deadlines whose due day is on or before `due_until`, with their dossiers."""
    rows = session.exec(select(Deadline, Dossier).join(Dossier, col(Dossier.id) == Deadline.dossier_id)
                        .where(Deadline.state == "open", Deadline.due <= due_until)
                        .order_by(col(Deadline.due), col(Deadline.id))).all()
    return [DueItem(d, dossier) for d, dossier in rows]
