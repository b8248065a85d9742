"""One dossier as its page shows it: where it stands and why: its stage and waits, deadlines,
contacts, the changes waiting for a person, the form's checks and what each changed, and every
mail in and out, with its documents and the reason for every decision not to answer."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlmodel import Session, col, select

from mailbot.dossiers.process import as_check, known_values, pending_change
from mailbot.dossiers.state import Wait, stage, waiting_for
from mailbot.forms.changes import FormChanges, changes_to_confirm, compare
from mailbot.store.models import (
    AttachmentRecord,
    Contact,
    Deadline,
    Decision,
    Dossier,
    Event,
    FormCheckRecord,
    Message,
    OutboxMail,
    PendingChange,
    Sighting,
)
from mailbot.web.scope import Scope


@dataclass(frozen=True)
class Attachment:
    filename: str
    document: str | None
    size: int


@dataclass(frozen=True)
class Entry:
    """One line of the timeline: a mail in, a mail out, or an event."""
    at: dt.datetime
    what: str  # in | out | event
    title: str  # subject, or the event's kind
    kind: str | None = None  # the mail's kind, the bot's mail's purpose
    who: str = ""  # sender, or recipients
    detail: str = ""
    mailboxes: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    decisions: tuple[tuple[bool, str], ...] = ()  # (answered, reason)
    state: str = ""  # the mail's (quarantined ...) or the bot's mail's (sent, failed ...)
    authenticated: bool | None = None
    auth_reason: str = ""
    message_pk: int | None = None
    outbox_id: int | None = None


@dataclass(frozen=True)
class FormEntry:
    at: dt.datetime
    filename: str
    complete: bool
    problems: tuple[tuple[str, str], ...]  # (field, message)
    changes: FormChanges | None  # against the previous form of the dossier
    held: bool  # its changes wait for a person, or were rejected


@dataclass(frozen=True)
class HeldChange:
    fields: tuple[tuple[str, object, object], ...]  # (field, in force, asked)
    sender: str
    since: dt.datetime
    message_authenticated: bool


@dataclass
class DossierPage:
    dossier: Dossier
    stage: str
    waiting: tuple[Wait, ...]
    deadlines: list[Deadline]
    contacts: list[Contact]
    held: HeldChange | None
    forms: list[FormEntry]
    timeline: list[Entry]
    claimed_with: list[str] = field(default_factory=list)  # other dossiers of the same project


def dossier_page(session: Session, scope: Scope, reference: str) -> DossierPage | None:
    """None when there is no such dossier or the staff member's mailbox never saw it."""
    dossier = scope.dossier(session, reference)
    if dossier is None:
        return None
    assert dossier.id is not None  # read back
    deadlines = list(session.exec(select(Deadline).where(Deadline.dossier_id == dossier.id)
                                  .order_by(col(Deadline.started_at), col(Deadline.id))))
    contacts = list(session.exec(select(Contact).where(Contact.dossier_id == dossier.id)
                                 .order_by(col(Contact.linked).desc(), col(Contact.id))))
    claimed_with = list(session.exec(select(Dossier.reference).where(Dossier.project_key == dossier.project_key,
                                                                     Dossier.id != dossier.id)
                                     .order_by(Dossier.reference)))
    return DossierPage(dossier, stage(dossier), waiting_for(dossier), deadlines, contacts,
                       _held(session, dossier), _forms(session, dossier), _timeline(session, scope, dossier),
                       claimed_with)


def _held(session: Session, dossier: Dossier) -> HeldChange | None:
    change = pending_change(session, dossier)
    if change is None:
        return None
    record = session.get(FormCheckRecord, change.form_check_id)
    cause = session.get(Message, change.message_pk)
    assert record is not None  # a pending change keeps its form (foreign key)
    asked = changes_to_confirm(known_values(session, dossier), as_check(record), tuple(change.fields.split(",")))
    return HeldChange(tuple((c.field, c.old, c.new) for c in asked),
                      (cause.sender if cause else None) or "?", change.created_at,
                      bool(cause and cause.sender_authenticated))


def _forms(session: Session, dossier: Dossier) -> list[FormEntry]:
    held = set(session.exec(select(PendingChange.message_pk).where(PendingChange.dossier_id == dossier.id,
                                                                   PendingChange.state != "confirmed")))
    out, previous = [], None
    for row in session.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == dossier.id)
                            .order_by(col(FormCheckRecord.id))):
        check = as_check(row)
        out.append(FormEntry(row.checked_at, row.filename, row.complete,
                             tuple((p.field, p.message) for p in check.problems),
                             compare(previous, check) if previous is not None else None, row.message_pk in held))
        if row.message_pk not in held:
            previous = check
    return out


def _timeline(session: Session, scope: Scope, dossier: Dossier) -> list[Entry]:
    entries: list[Entry] = []
    messages = list(session.exec(select(Message).where(Message.dossier_id == dossier.id, scope.message_seen())))
    pks = [m.id for m in messages]
    places: dict[int, set[str]] = {}
    for pk, mailbox in session.exec(select(Sighting.message_pk, Sighting.mailbox)
                                    .where(col(Sighting.message_pk).in_(pks))):
        places.setdefault(pk, set()).add(mailbox)
    files: dict[int, list[Attachment]] = {}
    for a in session.exec(select(AttachmentRecord).where(col(AttachmentRecord.message_pk).in_(pks))
                          .order_by(col(AttachmentRecord.id))):
        files.setdefault(a.message_pk, []).append(Attachment(a.filename, a.document, a.size))
    decisions: dict[int, list[tuple[bool, str]]] = {}
    for d in session.exec(select(Decision).where(col(Decision.message_pk).in_(pks)).order_by(col(Decision.id))):
        assert d.message_pk is not None  # selected by it
        decisions.setdefault(d.message_pk, []).append((d.answered, d.reason))
    for m in messages:
        assert m.id is not None  # read back
        entries.append(Entry(m.received_at, "in", m.subject, m.kind, m.sender or "", m.kind_reason,
                             tuple(sorted(places.get(m.id, ()))), tuple(files.get(m.id, ())),
                             tuple(decisions.get(m.id, ())),
                             m.status if m.status == "quarantined" else "",
                             m.sender_authenticated if m.sender_auth else None, m.sender_auth_reason,
                             message_pk=m.id))
    for o in session.exec(select(OutboxMail).where(OutboxMail.dossier_id == dossier.id)):
        if not scope.sees(o):
            continue
        to = json.loads(o.recipients) + [f"cc {a}" for a in json.loads(o.cc)]
        entries.append(Entry(o.sent_at or o.created_at, "out", o.subject, o.purpose, ", ".join(to),
                             o.last_error, state=o.state, outbox_id=o.id))
    for e in session.exec(select(Event).where(Event.dossier_id == dossier.id)):
        entries.append(Entry(e.at, "event", e.kind, detail=e.detail, message_pk=e.message_pk))
    order = {"in": 0, "event": 1, "out": 2}
    return sorted(entries, key=lambda x: (x.at, order[x.what]))

