"""The retention job: the personal data of dossiers closed or dormant for months is purged.

Closed: the production access was sent and no deadline runs (open or paused). Dormant: no
mail for the dossier for `months_dormant`, whatever its step (the bot's own reminders do not
count). The months run from the dossier's last activity: its last mail, its last change.

What goes: the order forms' values (names, phones, IBAN, addresses) and the problems'
messages (they quote values); the answers' bodies and subjects and the client addresses they
went to; the dossier's contacts; its mails' senders, subjects and attachment file names; the
free text of events and decisions that may name someone. What stays: references, dates,
kinds, flags, deadlines, hashes and sizes, and the events themselves, so the dossier's
history can still be told without saying who. Each purged dossier gets a
"personal_data_purged" event; mail outside any dossier (newsletters, bounces, strangers) and
the bot's mail outside dossiers (digests, staff notes) go after `months_outside_dossiers`.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from dataclasses import dataclass, fields

from sqlmodel import Session, col, func, or_, select

from mailbot.addresses import normalise_address, replace_in_stored
from mailbot.config import Retention, Settings
from mailbot.store.models import (
    AttachmentRecord,
    Contact,
    Deadline,
    Decision,
    Dossier,
    Event,
    FormCheckRecord,
    Message,
    OutboxAddress,
    OutboxMail,
)

PURGED_EVENT = "personal_data_purged"
REMOVED = "[address removed]"
# Outbox mails the sender may still be working on: their dossier waits for the next run.
IN_FLIGHT = ("pending", "sending", "handed")
# Event kinds whose detail the bot writes from field ids, codes, dates and staff names only:
# kept. Every other kind (dossier_opened names the sender, reply_received quotes the subject,
# form_complete the file name, and any kind added later) has its detail blanked.
PLAIN_DETAILS = frozenset({
    "deadline_started", "deadline_met", "deadline_paused", "deadline_cancelled", "deadline_overdue",
    "deadline_warning", "prevalidated", "access_sent", "convention_received", "signed_form_received",
    "id_copy_received", "bosa_copy_missing", "form_incomplete", "form_changed", "staff_mail",
    "unlinked_sender_mail", PURGED_EVENT, "address_erased",
})


def months_before(at: dt.datetime, months: int) -> dt.datetime:
    """The same day and time `months` months earlier (the month's last day if it is shorter)."""
    index = at.year * 12 + at.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Due:
    """A dossier whose personal data is due for purging, and why."""
    dossier_id: int
    reference: str
    why: str  # closed | dormant
    last_activity: dt.datetime
    unsent: int = 0  # its answers still in the outbox: held until they are sent or given up


@dataclass
class Purged:
    """How many stored rows a purge changed, by what they held."""
    form_values: int = 0
    answers: int = 0
    contacts: int = 0
    mails: int = 0
    attachment_names: int = 0
    event_details: int = 0
    decisions: int = 0

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def summary(self) -> str:
        parts = [f"{f.name.replace('_', ' ')} ({getattr(self, f.name)})" for f in fields(self) if getattr(self, f.name)]
        return ", ".join(parts) or "nothing left to remove"


@dataclass(frozen=True)
class RetentionReport:
    at: dt.datetime
    rules: Retention
    dossiers: tuple[tuple[Due, Purged], ...]
    outside: Purged  # mail and outbox rows in no dossier
    applied: bool


class _Keep:
    """The watched mailboxes' and staff's own addresses: not a client's personal data, kept
    where they stand (a staff mail's sender, a digest's recipient)."""

    def __init__(self, settings: Settings) -> None:
        own = ({b.address for b in settings.mailboxes.values()}
               | {s for b in settings.mailboxes.values() for s in b.staff})
        self.addresses = frozenset(normalise_address(a) for a in own)

    def __contains__(self, address: str | None) -> bool:
        return address is not None and normalise_address(address) in self.addresses

    def redact(self, text: str) -> str:
        """`text` with every address but ours replaced."""
        return replace_in_stored(text, lambda a: a not in self, REMOVED)[0] if text else text


def due_dossiers(session: Session, now: dt.datetime, rules: Retention) -> list[Due]:
    """The dossiers closed or dormant long enough, not purged since their last activity."""
    closed_before = months_before(now, rules.months_after_close)
    dormant_before = months_before(now, rules.months_dormant)
    last_mail = dict(session.exec(select(Message.dossier_id, func.max(Message.received_at))
                                  .where(col(Message.dossier_id).is_not(None)).group_by(col(Message.dossier_id))).all())
    purged = dict(session.exec(select(Event.dossier_id, func.max(Event.at)).where(Event.kind == PURGED_EVENT)
                               .group_by(col(Event.dossier_id))).all())
    running = set(session.exec(select(Deadline.dossier_id).where(col(Deadline.state).in_(("open", "paused")))).all())
    unsent = dict(session.exec(select(OutboxMail.dossier_id, func.count()).where(col(OutboxMail.state).in_(IN_FLIGHT))
                               .group_by(col(OutboxMail.dossier_id))).all())
    due = []
    for dossier in session.exec(select(Dossier).order_by(col(Dossier.id))):
        assert dossier.id is not None  # read back
        last = max(t for t in (dossier.opened_at, dossier.updated_at, last_mail.get(dossier.id)) if t is not None)
        if purged.get(dossier.id) and purged[dossier.id] >= last:
            continue
        waiting = unsent.get(dossier.id, 0)
        if dossier.access_sent and dossier.id not in running and last <= closed_before:
            due.append(Due(dossier.id, dossier.reference, "closed", last, waiting))
        elif last <= dormant_before:
            due.append(Due(dossier.id, dossier.reference, "dormant", last, waiting))
    return due


def _purge_messages(session: Session, messages: list[Message], keep: _Keep, counts: Purged) -> None:
    ids = [m.id for m in messages]
    for msg in messages:
        new = (None if msg.sender not in keep else msg.sender, "", "", keep.redact(msg.defects),
               keep.redact(msg.status_reason))
        if new != (msg.sender, msg.subject, msg.kind_reason, msg.defects, msg.status_reason):
            msg.sender, msg.subject, msg.kind_reason, msg.defects, msg.status_reason = new
            session.add(msg)
            counts.mails += 1
    if not ids:
        return
    for att in session.exec(select(AttachmentRecord).where(col(AttachmentRecord.message_pk).in_(ids))):
        if att.filename or att.reason:
            att.filename, att.reason = "", ""  # the document kind, hash and size stay
            session.add(att)
            counts.attachment_names += 1
    for form in session.exec(select(FormCheckRecord).where(col(FormCheckRecord.message_pk).in_(ids))):
        _purge_form(session, form, counts)
    for decision in session.exec(select(Decision).where(col(Decision.message_pk).in_(ids))):
        _redact_decision(session, decision, keep, counts)


def _purge_form(session: Session, form: FormCheckRecord, counts: Purged) -> None:
    # The problems' field ids and codes stay; their messages quote the values.
    problems = json.dumps([[f, c, ""] for f, c, *_ in json.loads(form.problems or "[]")])
    if form.values != "{}" or form.problems != problems or form.filename:
        form.values, form.problems, form.filename = "{}", problems, ""
        session.add(form)
        counts.form_values += 1


def _redact_decision(session: Session, decision: Decision, keep: _Keep, counts: Purged) -> None:
    reason = keep.redact(decision.reason)
    if reason != decision.reason:
        decision.reason = reason
        session.add(decision)
        counts.decisions += 1


def _purge_outbox(session: Session, rows: list[OutboxMail], keep: _Keep, counts: Purged) -> None:
    ids = [row.id for row in rows]
    # The addresses the limits count by (only the last 24 hours matter to them): all go.
    for address in session.exec(select(OutboxAddress).where(col(OutboxAddress.outbox_id).in_(ids))) if ids else ():
        session.delete(address)
    for row in rows:
        new = ("", "", "", keep.redact(row.recipients), keep.redact(row.cc), keep.redact(row.detail),
               keep.redact(row.last_error))
        old = (row.subject, row.body_text, row.body_html, row.recipients, row.cc, row.detail, row.last_error)
        if new != old:
            row.subject, row.body_text, row.body_html, row.recipients, row.cc, row.detail, row.last_error = new
            session.add(row)
            counts.answers += 1


def purge_dossier(session: Session, due: Due, now: dt.datetime, keep: _Keep) -> Purged:
    """Remove the dossier's personal data and record that it was done, in the caller's transaction."""
    counts = Purged()
    messages = list(session.exec(select(Message).where(Message.dossier_id == due.dossier_id)))
    _purge_messages(session, messages, keep, counts)
    for form in session.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == due.dossier_id)):
        _purge_form(session, form, counts)
    _purge_outbox(session, list(session.exec(select(OutboxMail).where(OutboxMail.dossier_id == due.dossier_id))),
                  keep, counts)
    for contact in session.exec(select(Contact).where(Contact.dossier_id == due.dossier_id)):
        session.delete(contact)
        counts.contacts += 1
    for event in session.exec(select(Event).where(Event.dossier_id == due.dossier_id, Event.detail != "",
                                                  col(Event.kind).not_in(PLAIN_DETAILS))):
        event.detail = ""
        session.add(event)
        counts.event_details += 1
    for decision in session.exec(select(Decision).where(Decision.dossier_id == due.dossier_id)):
        _redact_decision(session, decision, keep, counts)
    since = due.last_activity.date().isoformat()
    session.add(Event(dossier_id=due.dossier_id, at=now, kind=PURGED_EVENT,
                      detail=f"{due.why}, last activity {since}: removed {counts.summary()}"))
    return counts


def purge_outside_dossiers(session: Session, now: dt.datetime, months: int, keep: _Keep) -> Purged:
    """Mail in no dossier and the bot's mail outside dossiers (digests, staff notes), once old."""
    counts = Purged()
    before = months_before(now, months)
    messages = list(session.exec(select(Message).where(
        col(Message.dossier_id).is_(None), Message.received_at <= before,
        or_(col(Message.sender).is_not(None), Message.subject != "", Message.kind_reason != ""))))
    _purge_messages(session, messages, keep, counts)
    rows = list(session.exec(select(OutboxMail).where(
        col(OutboxMail.dossier_id).is_(None), OutboxMail.created_at <= before, col(OutboxMail.state).not_in(IN_FLIGHT),
        or_(OutboxMail.body_text != "", OutboxMail.body_html != "", OutboxMail.subject != ""))))
    _purge_outbox(session, rows, keep, counts)
    return counts


def run_retention(session: Session, now: dt.datetime, settings: Settings, apply: bool) -> RetentionReport:
    """Purge what is due, committed when `apply`, else rolled back (a dry run counts the same rows)."""
    keep = _Keep(settings)
    rules = settings.retention
    done = tuple((due, purge_dossier(session, due, now, keep) if not due.unsent else Purged())
                 for due in due_dossiers(session, now, rules))
    outside = purge_outside_dossiers(session, now, rules.months_outside_dossiers, keep)
    if apply:
        session.commit()
    else:
        session.rollback()
    return RetentionReport(now, rules, done, outside, apply)


def render_report(report: RetentionReport) -> str:
    r = report.rules
    head = (f"retention at {report.at.isoformat(timespec='minutes')} (closed for {r.months_after_close} months, "
            f"dormant for {r.months_dormant}, mail outside dossiers after {r.months_outside_dossiers})"
            + ("" if report.applied else ": dry run, nothing changed"))
    verb = "purged" if report.applied else "would purge"
    lines = [head]
    for due, counts in report.dossiers:
        what = f"held: {due.unsent} of its mails not sent yet" if due.unsent else f"{verb} {counts.summary()}"
        lines.append(f"  {due.reference:15} {due.why:8} last activity {due.last_activity.date().isoformat()}: {what}")
    if not report.dossiers:
        lines.append("  no dossier is due")
    if report.outside:
        lines.append(f"  outside dossiers: {verb} {report.outside.summary()}")
    return "\n".join(lines)
