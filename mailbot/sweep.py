"""The deadline sweep: which deadlines are due tomorrow (warn) or passed (escalate), once each.

What is due is derived from the database, so downtime loses nothing and two sweeps never
act twice on the same deadline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlmodel import Session

from mailbot.calendar import BusinessCalendar
from mailbot.dossiers.deadlines import DueItem, open_deadlines
from mailbot.store.models import Event


@dataclass(frozen=True)
class Alert:
    kind: str  # warning | escalation
    item: DueItem


def sweep(session: Session, now: dt.datetime, calendars: dict[str, BusinessCalendar], zone: ZoneInfo) -> list[Alert]:
    """Mark and return the warnings and escalations due at `now` (today is the date in `zone`);
    the caller commits."""
    today = now.astimezone(zone).date()
    horizon = max(cal.next_business_day(today) for cal in calendars.values())
    alerts: list[Alert] = []
    for item in open_deadlines(session, horizon):
        deadline, calendar = item.deadline, calendars[item.deadline.calendar]
        assert item.dossier.id is not None  # read back
        if deadline.due < today:
            if deadline.escalated_at is None:
                deadline.escalated_at = now
                alerts.append(Alert("escalation", item))
                session.add(Event(dossier_id=item.dossier.id, at=now, kind="deadline_overdue",
                                  detail=f"{deadline.name}: due {deadline.due.isoformat()}"))
        elif deadline.due == calendar.next_business_day(today) and deadline.warned_at is None \
                and deadline.escalated_at is None:
            deadline.warned_at = now
            alerts.append(Alert("warning", item))
            session.add(Event(dossier_id=item.dossier.id, at=now, kind="deadline_warning",
                              detail=f"{deadline.name}: due {deadline.due.isoformat()}"))
        session.add(deadline)
    return alerts
