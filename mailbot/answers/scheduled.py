"""Mail the scheduled jobs send: deadline warnings and escalations, and client reminders."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, col, func, select

from mailbot.answers.drafts import dossier_view, local_time
from mailbot.answers.render import Renderer
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers.state import waiting_for
from mailbot.outbox import Draft
from mailbot.store.models import Contact, Dossier, Event, Message, OutboxMail
from mailbot.sweep import Alert

CLIENT_DOCUMENTS = ("order_form", "corrected_order_form", "convention", "signed_order_form", "id_copy")
# Events that show the client moved: the reminder clock counts from the last of them.
CLIENT_MOVES = ("dossier_opened", "form_incomplete", "form_complete", "form_unusable", "convention_received",
                "signed_form_received", "id_copy_received", "prevalidated")


def alert_draft(session: Session, alert: Alert, now: dt.datetime, settings: Settings,
                calendars: dict[str, BusinessCalendar], renderer: Renderer) -> Draft:
    """A warning the day before the due day, or an escalation once it passed, to the party's staff."""
    deadline, dossier = alert.item.deadline, alert.item.dossier
    calendar, zone = calendars[deadline.calendar], settings.process.zone
    late = max(calendar.business_days_between(deadline.due, now.astimezone(zone).date()), 1)
    last = session.exec(select(Message.subject).where(Message.dossier_id == dossier.id)
                        .order_by(col(Message.id).desc()).limit(1)).first() or ""
    context = {"dossier": dossier_view(dossier), "now": local_time(now, zone), "deadline": deadline.name,
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
                    renderer: Renderer) -> list[Draft]:
    """Clients who have owed a document for `reminder_days` business days, reminded once per period."""
    days, zone = settings.answers.reminder_days, settings.process.zone
    today = now.astimezone(zone).date()
    drafts = []
    open_ids = select(Dossier.id).where(Dossier.access_sent == False)  # noqa: E712
    # Three grouped queries for all open dossiers, not three queries per dossier: at 10,000
    # dossiers (~900 open) the per-dossier queries took seconds.
    last_moves = dict(session.exec(select(Event.dossier_id, func.max(Event.at))
                                   .where(col(Event.dossier_id).in_(open_ids), col(Event.kind).in_(CLIENT_MOVES))
                                   .group_by(Event.dossier_id)).all())
    last_reminders = dict(session.exec(select(OutboxMail.dossier_id, func.max(OutboxMail.created_at))
                                       .where(col(OutboxMail.dossier_id).in_(open_ids), OutboxMail.purpose == "reminder")
                                       .group_by(OutboxMail.dossier_id)).all())
    first_contact = select(func.min(Contact.id)).where(col(Contact.dossier_id).in_(open_ids)).group_by(Contact.dossier_id)
    senders = dict(session.exec(select(Contact.dossier_id, Contact.email).where(col(Contact.id).in_(first_contact))).all())
    for dossier in session.exec(select(Dossier).where(Dossier.access_sent == False)):  # noqa: E712
        owed = [w.what for w in waiting_for(dossier) if w.party == "client" and w.what in CLIENT_DOCUMENTS]
        if not owed:
            continue
        last_move, last_reminder = last_moves.get(dossier.id), last_reminders.get(dossier.id)
        since = max(t for t in (last_move, last_reminder) if t is not None)
        idle = calendar.business_days_between(since.astimezone(zone).date(), today)
        if idle < days:
            continue
        sender = senders.get(dossier.id)
        if sender is None:
            continue
        language = dossier.language
        rendered = renderer.render("reminder", language, {"dossier": dossier_view(dossier), "now": local_time(now, zone),
                                                          "waiting": owed, "days": idle})
        drafts.append(Draft("reminder", settings.mailboxes[settings.answers.from_mailbox].address, (sender,), (),
                            rendered, f"[{dossier.reference}] {rendered.subject}", dossier.id, None, None, (),
                            {"dossier": dossier.reference, "waiting": owed}))
    return drafts
