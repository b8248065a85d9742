"""What a person does on the staff page. Each action changes the store in the caller's
transaction and is recorded with who and when: in the staff actions, and in the dossier's
events when it concerns a dossier. Pure store work: no request, no rendering."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, select

from mailbot.addresses import normalise_address
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers.process import link_contact, mark_done
from mailbot.errors import ActionRefused, OutboxStateError
from mailbot.outbox import send_again
from mailbot.store.folders import still_on_server
from mailbot.store.models import Dossier, Event, Message, OutboxMail, StaffAction


class Action(StrEnum):
    PREVALIDATED = "prevalidated"  # as `mailbot mark REF prevalidated`
    ACCESS_SENT = "access_sent"
    CONFIRM_CHANGES = "confirm-changes"
    REJECT_CHANGES = "reject-changes"
    LINK_ADDRESS = "linked_address"
    SETTLE_PROJECT = "settled_project"
    RELEASE = "released"  # a quarantined mail, for another try
    SEND_AGAIN = "sent_again"  # a failed answer
    HANDLED = "handled"  # a mail that needed a person: dealt with


STEPS = (Action.PREVALIDATED, Action.ACCESS_SENT, Action.CONFIRM_CHANGES, Action.REJECT_CHANGES)
ROLES = ("colleague", "business", "technical", "billing")


def _record(session: Session, at: dt.datetime, who: str, action: Action, detail: str, *,
            dossier_id: int | None = None, message_pk: int | None = None, outbox_id: int | None = None) -> None:
    session.add(StaffAction(at=at, who=who, action=action.value, dossier_id=dossier_id, message_pk=message_pk,
                            outbox_id=outbox_id, detail=detail))


def mark_step(session: Session, dossier: Dossier, step: Action, at: dt.datetime, who: str, settings: Settings,
              calendars: dict[str, BusinessCalendar]) -> str:
    """What `mailbot mark` does, from the page: the deadline met, or the held changes decided."""
    if step not in STEPS:
        raise ActionRefused(f"{step} is not a step a person marks")
    done = mark_done(session, dossier, step.value, at, who, settings=settings, calendars=calendars)
    _record(session, at, who, step, done, dossier_id=dossier.id)
    return done


def link_address(session: Session, dossier: Dossier, address: str, role: str, at: dt.datetime, who: str) -> str:
    """A person vouches for an address: it may receive the dossier's details and reminders, and
    the mail it sent to the dossier is dealt with."""
    if role not in ROLES:
        raise ActionRefused(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    try:
        validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ActionRefused(f"{address!r} is not an e-mail address: {exc}") from exc
    email = normalise_address(address)
    assert dossier.id is not None  # read back
    new = link_contact(session, dossier, email, role)
    text = f"{email} linked as {role} by {who}" if new else f"{email} was already linked"
    session.add(Event(dossier_id=dossier.id, at=at, kind="contact_linked", detail=text))
    for m in session.exec(select(Message).where(Message.dossier_id == dossier.id, Message.unlinked_sender == True)):  # noqa: E712
        if m.sender and normalise_address(m.sender) == email:
            _record(session, at, who, Action.HANDLED, f"its sender {email} linked", dossier_id=dossier.id,
                    message_pk=m.id)
    _record(session, at, who, Action.LINK_ADDRESS, text, dossier_id=dossier.id)
    dossier.updated_at = at
    session.add(dossier)
    return f"{dossier.reference}: {text}"


def settle_project(session: Session, kept: Dossier, at: dt.datetime, who: str) -> str:
    """Two dossiers or more claim one project (a sender named a project that is another's): the
    person says which is the project's. The others stay, set apart under a project key of
    their own, so that mail naming the project goes to the one kept; their senders can then be
    linked to it (link_address) if they are the client's colleagues."""
    others = list(session.exec(select(Dossier).where(Dossier.project_key == kept.project_key,
                                                     Dossier.id != kept.id)))
    if not others:
        raise ActionRefused(f"{kept.reference}: no other dossier claims its project")
    assert kept.id is not None  # read back
    names = ", ".join(d.reference for d in others)
    for other in others:
        assert other.id is not None  # read back
        other.project_key = f"{other.project_key} #{other.reference.lower()}"
        other.updated_at = at
        session.add(other)
        session.add(Event(dossier_id=other.id, at=at, kind="project_settled",
                          detail=f"{kept.reference} is the project's dossier, said {who}; this one is set apart"))
    session.add(Event(dossier_id=kept.id, at=at, kind="project_settled",
                      detail=f"the project's dossier, said {who}; set apart: {names}"))
    _record(session, at, who, Action.SETTLE_PROJECT, f"kept {kept.reference}; set apart {names}",
            dossier_id=kept.id)
    return f"{kept.reference} is the project's dossier; set apart: {names}"


def release(session: Session, message_pk: int, at: dt.datetime, who: str,
            watched: tuple[tuple[str, str], ...]) -> str:
    """A quarantined mail gets another try: the watcher of each folder it was seen in fetches
    it again at its next round (web/attention.py stops listing it). Only while a watched folder
    still has it: the bot keeps no copy of the mail itself."""
    msg = session.get(Message, message_pk)
    if msg is None or msg.status != "quarantined":
        raise ActionRefused(f"mail {message_pk} is not in the quarantine")
    if not still_on_server(session, message_pk, watched):
        raise ActionRefused(f"mail {message_pk} cannot be taken again: no folder the bot watches can fetch it "
                            "(found gone from the server before, its folder renumbered, or no longer watched); "
                            "have the sender send it again, or mark it dealt with")
    was = msg.status_reason
    msg.status, msg.attempts = "received", 0
    msg.status_reason = f"released by {who} for another try (was: {was})"[:2000]
    session.add(msg)
    _record(session, at, who, Action.RELEASE, was, dossier_id=msg.dossier_id, message_pk=msg.id)
    if msg.dossier_id is not None:
        session.add(Event(dossier_id=msg.dossier_id, at=at, kind="mail_released", message_pk=msg.id,
                          detail=f"released from the quarantine by {who}"))
    return f"mail {message_pk} released: taken again at the bot's next round"


def send_failed_again(session: Session, outbox_id: int, at: dt.datetime, who: str) -> str:
    row = session.get(OutboxMail, outbox_id)
    if row is None:
        raise ActionRefused(f"no outbox mail {outbox_id}")
    error = row.last_error
    try:
        send_again(session, row, at)
    except OutboxStateError as exc:
        raise ActionRefused(str(exc)) from exc
    _record(session, at, who, Action.SEND_AGAIN, error, dossier_id=row.dossier_id, outbox_id=row.id)
    if row.dossier_id is not None:
        session.add(Event(dossier_id=row.dossier_id, at=at, kind="answer_sent_again",
                          detail=f"{row.purpose}: sent again by {who} (refused before: {error[:200]})"))
    return f"{row.purpose} to {row.recipients}: sent again"


def handled(session: Session, message_pk: int, at: dt.datetime, who: str, note: str = "") -> str:
    msg = session.get(Message, message_pk)
    if msg is None:
        raise ActionRefused(f"no mail {message_pk}")
    _record(session, at, who, Action.HANDLED, note[:500], dossier_id=msg.dossier_id, message_pk=msg.id)
    if msg.dossier_id is not None:
        session.add(Event(dossier_id=msg.dossier_id, at=at, kind="mail_handled", message_pk=msg.id,
                          detail=f"dealt with by {who}" + (f": {note[:500]}" if note else "")))
    return f"mail {message_pk}: dealt with"
