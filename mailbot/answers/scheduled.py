"""Mail the scheduled jobs send: deadline warnings and escalations, and client reminders."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from sqlmodel import Session, col, func, select

from mailbot.answers.drafts import dossier_view, local_time
from mailbot.answers.render import Renderer
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers.state import waiting_for
from mailbot.dossiers.writers import writers_of
from mailbot.outbox import Draft
from mailbot.store.models import Dossier, Event, Message, OutboxMail
from mailbot.sweep import Alert

CLIENT_DOCUMENTS = ("order_form", "corrected_order_form", "convention", "signed_order_form", "id_copy")
# Events that show the client moved: the reminder clock counts from the last of them.
CLIENT_MOVES = ("dossier_opened", "form_incomplete", "form_complete", "form_unusable", "convention_received",
                "signed_form_received", "id_copy_received", "prevalidated")
DORMANT, AWAKE = "dossier_dormant", "dossier_awake"  # reminders stopped, and resumed


def alert_draft(session: Session, alert: Alert, now: dt.datetime, settings: Settings,
                calendars: dict[str, BusinessCalendar], renderer: Renderer) -> Draft:
    """A warning the day before the due day, or an escalation once it passed, to the party's staff."""
    deadline, dossier = alert.item.deadline, alert.item.dossier
    calendar, zone = calendars[deadline.calendar], settings.process.zone
    late = max(calendar.business_days_between(deadline.due, now.astimezone(zone).date()), 1)
    last = session.exec(select(Message.subject).where(Message.dossier_id == dossier.id)
                        .order_by(col(Message.id).desc()).limit(1)).first() or ""
    context: dict[str, Any] = {
        "dossier": dossier_view(dossier), "now": local_time(now, zone), "deadline": deadline.name,
        "due": deadline.due.isoformat(), "started": deadline.started_at.astimezone(zone).date().isoformat(),
        "waiting": [(w.party, w.what) for w in waiting_for(dossier)], "last_mail": last}
    if alert.kind == "escalation":
        context["days_late"] = late
    party = settings.mailboxes[deadline.party]
    rendered = renderer.render(alert.kind, party.language, context)
    cc = (settings.mailboxes["bosa"].address,) if alert.kind == "escalation" and deadline.party != "bosa" else ()
    subject = f"[{dossier.reference}] {rendered.subject}"
    return Draft(alert.kind, settings.mailboxes[settings.answers.from_mailbox].address, (party.address,), cc,
                 rendered, subject, dossier.id, None, None, (),
                 {"dossier": dossier.reference, "deadline": deadline.name, "due": deadline.due.isoformat()},
                 client_mail=False)


def reminder_drafts(session: Session, now: dt.datetime, settings: Settings, calendar: BusinessCalendar,
                    renderer: Renderer, history_before: dt.datetime | None = None) -> list[Draft]:
    """Clients who have owed a document for `reminder_days` business days, reminded once per
    period and at most `max_reminders` times per owed document, only at an address that wrote
    to the dossier itself (dossiers/writers.py), the latest writer. A dossier due a reminder
    with none left to send, or nobody who wrote to send it to, becomes dormant (`dormant_since`
    and an event, in the caller's session; the digest lists it) until the client moves again.
    The days count from `history_before` at the earliest: no reminder is owed for a wait that
    began before the bot's first start (mailbot/history.py)."""
    days, cap, zone = settings.answers.reminder_days, settings.answers.max_reminders, settings.process.zone
    today = now.astimezone(zone).date()
    drafts = []
    open_ids = select(Dossier.id).where(Dossier.access_sent == False)  # noqa: E712
    # Grouped queries for all open dossiers, not queries per dossier: at 10,000 dossiers
    # (~900 open) the per-dossier queries took seconds.
    last_moves = dict(session.exec(select(Event.dossier_id, func.max(Event.at))
                                   .where(col(Event.dossier_id).in_(open_ids), col(Event.kind).in_(CLIENT_MOVES))
                                   .group_by(col(Event.dossier_id))).all())
    reminded: dict[int, Counter[str]] = {}
    last_reminders: dict[int, dt.datetime] = {}
    for dossier_id, created, detail in session.exec(
            select(OutboxMail.dossier_id, OutboxMail.created_at, OutboxMail.detail)
            .where(col(OutboxMail.dossier_id).in_(open_ids), OutboxMail.purpose == "reminder")):
        if dossier_id is None:  # excluded by the query
            continue
        reminded.setdefault(dossier_id, Counter()).update(_waiting(detail))
        last_reminders[dossier_id] = max(created, last_reminders.get(dossier_id, created))
    writers = writers_of(session, open_ids)
    for dossier in session.exec(select(Dossier).where(Dossier.access_sent == False)):  # noqa: E712
        assert dossier.id is not None  # read back
        last_move, last_reminder = last_moves.get(dossier.id), last_reminders.get(dossier.id)
        if dossier.dormant_since is not None and last_move is not None and last_move > dossier.dormant_since:
            _wake(session, dossier, now, "the dossier moved since")
        owed = [w.what for w in waiting_for(dossier) if w.party == "client" and w.what in CLIENT_DOCUMENTS]
        if not owed:
            continue
        assert dossier.id is not None  # read back
        since = max(t for t in (last_move, last_reminder, dossier.opened_at, history_before) if t is not None)
        idle = calendar.business_days_between(since.astimezone(zone).date(), today)
        if idle < days:
            continue
        left = [w for w in owed if reminded.get(dossier.id, Counter())[w] < cap]
        to = writers.get(dossier.id, [])
        if not left or not to:
            why = (f"{cap} reminders about {', '.join(owed)} went unanswered" if not left
                   else "nobody who wrote to the dossier to remind")
            _fall_dormant(session, dossier, now, why)
            continue
        if dossier.dormant_since is not None:
            _wake(session, dossier, now, "a reminder is due again")
        rendered = renderer.render("reminder", dossier.language, {"dossier": dossier_view(dossier),
                                                                  "now": local_time(now, zone),
                                                                  "waiting": left, "days": idle})
        drafts.append(Draft("reminder", settings.mailboxes[settings.answers.from_mailbox].address, (to[0],), (),
                            rendered, f"[{dossier.reference}] {rendered.subject}", dossier.id, None, None, (),
                            {"dossier": dossier.reference, "waiting": left}))
    return drafts


def _waiting(detail: str) -> list[str]:
    """The documents a stored reminder asked for."""
    try:
        waiting = json.loads(detail or "{}").get("waiting", [])
    except (ValueError, AttributeError):
        return []
    return [w for w in waiting if isinstance(w, str)] if isinstance(waiting, list) else []


def _fall_dormant(session: Session, dossier: Dossier, now: dt.datetime, why: str) -> None:
    if dossier.dormant_since is not None:
        return
    dossier.dormant_since = now
    session.add(dossier)
    assert dossier.id is not None  # read back
    session.add(Event(dossier_id=dossier.id, at=now, kind=DORMANT, detail=f"no more reminders: {why}"))


def _wake(session: Session, dossier: Dossier, now: dt.datetime, why: str) -> None:
    dossier.dormant_since = None
    session.add(dossier)
    assert dossier.id is not None  # read back
    session.add(Event(dossier_id=dossier.id, at=now, kind=AWAKE, detail=why))
