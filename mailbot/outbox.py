"""The persistent outbox: mail waiting to go out, and the one state machine it goes through.

    enqueue ──> PENDING ──claim──> SENDING ──hand over──> HANDED ──> SENT
                  ^  ^                │  │                  │  │
                  │  └── retry ───────┘  └──> FAILED <──────┘  │
                  └──────── refused at the dot, or not taken ──┘
    enqueue in shadow mode ──> SHADOW (never sent; shown to staff in the digest)

A mail is written here within the caller's transaction, after the limits; the sender claims it,
marks it "handed" right before the final dot of DATA (mailbot/transport/smtp.py says why), and
moves it on from there. Every state change goes through `_enter`, which allows only the moves
in TRANSITIONS; every query on the states is here. The states are stored as their string values.

The Message-ID is fixed here, before sending: the sender can then tell, after a crash, whether
a mail it was sending did leave (it is in the sent folder) and never sends one twice.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import Select
from sqlmodel import Session, col, func, select

from mailbot.addresses import normalise_address
from mailbot.answers.purposes import Purpose
from mailbot.answers.render import Rendered
from mailbot.errors import OutboxStateError
from mailbot.store.models import AttachmentRecord, Decision, OutboxAddress, OutboxMail


class OutboxState(StrEnum):
    PENDING = "pending"  # to send, from `not_before` on
    SENDING = "sending"  # claimed by the sender: the server cannot have it yet
    HANDED = "handed"  # the final dot is on its way: from now on the server may have it
    SENT = "sent"
    FAILED = "failed"  # refused for good (5xx)
    SHADOW = "shadow"  # shadow mode: never sent


TRANSITIONS: dict[OutboxState, frozenset[OutboxState]] = {
    OutboxState.PENDING: frozenset({OutboxState.SENDING}),
    # back to PENDING: refused for now, or not in the sent folder after a crash; SENT: found there
    OutboxState.SENDING: frozenset({OutboxState.HANDED, OutboxState.PENDING, OutboxState.FAILED, OutboxState.SENT}),
    # PENDING or FAILED: the server refused the mail at its dot (or, after a crash, it is not in
    # a sent folder that keeps every mail the server takes)
    OutboxState.HANDED: frozenset({OutboxState.SENT, OutboxState.PENDING, OutboxState.FAILED}),
    OutboxState.SENT: frozenset(),
    OutboxState.FAILED: frozenset(),  # for the sender; a person may send it again (send_again)
    OutboxState.SHADOW: frozenset(),
}
UNSENT = (OutboxState.PENDING, OutboxState.SENDING, OutboxState.HANDED)  # what the sender still has to do


def allowed(source: str, target: OutboxState) -> bool:
    return target in TRANSITIONS[OutboxState(source)]


def _enter(row: OutboxMail, target: OutboxState) -> None:
    """The one place a stored mail changes state."""
    if not allowed(row.state, target):
        raise OutboxStateError(f"outbox mail {row.id}: {row.state} -> {target} is not a transition")
    row.state = target.value


# --- writing mail to the outbox -----------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """How much mail the bot writes, counted over the last 24 hours with every address
    normalised (case, Unicode, punycode: mailbot/addresses.py), so that one person is one count."""
    per_purpose_per_day: int = 1  # answers of one purpose per address per dossier (unless a new document came)
    per_address_per_day: int = 10  # all answers to one address: the backstop against loops
    notes_per_dossier_per_day: int = 1  # notes to staff about one dossier; the rest is in the digest
    notes_per_sender_per_day: int = 1  # notes about one sender's mail in no dossier
    notes_outside_dossiers_per_day: int = 20  # notes about mail in no dossier, all senders together


@dataclass(frozen=True)
class Draft:
    purpose: str
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    rendered: Rendered
    subject: str
    dossier_id: int | None = None
    cause_pk: int | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    client_mail: bool = True  # the answer limits apply to mail to clients, not to staff's
    about: str | None = None  # a staff note: the sender of the mail it is about


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "mailbot.localhost"
    return f"mailbot.{uuid.uuid4().hex}@{domain}"


def limit_reason(session: Session, draft: Draft, now: dt.datetime, limits: Limits) -> str | None:
    """Why this draft must not go out (the RFC 3834 rate limits, the bundling of staff notes), or None."""
    since = now - dt.timedelta(days=1)
    if draft.purpose == Purpose.NEEDS_HUMAN:
        return _note_limit(session, draft, since, limits)
    if not draft.client_mail:
        return None
    for address in draft.to:
        mails = _mails_to(normalise_address(address), since)
        same = mails.where(col(OutboxMail.purpose) == draft.purpose, _same_dossier(draft.dossier_id))
        if _count(session, same) >= limits.per_purpose_per_day and not brings_new_document(session, draft.cause_pk):
            return f"limit: a {draft.purpose} answer already went to {address} for this dossier in the last 24 hours"
        if _count(session, mails) >= limits.per_address_per_day:
            return f"limit: {limits.per_address_per_day} answers to {address} in the last 24 hours"
    return None


def _mails_to(address: str, since: dt.datetime) -> Select:
    """The outbox mails of the last 24 hours with `address` (normalised) in To or Cc."""
    return (select(OutboxMail.id).join(OutboxAddress, col(OutboxAddress.outbox_id) == OutboxMail.id)
            .where(OutboxAddress.address == address, OutboxAddress.created_at > since,
                   col(OutboxAddress.role).in_(("to", "cc"))))


def _same_dossier(dossier_id: int | None):
    return col(OutboxMail.dossier_id).is_(None) if dossier_id is None else OutboxMail.dossier_id == dossier_id


def _count(session: Session, query: Select) -> int:
    return session.exec(select(func.count(func.distinct(query.subquery().c.id)))).one()


def brings_new_document(session: Session, message_pk: int | None) -> bool:
    """The mail carries a document of the process (an order form, even a PDF one, a convention,
    a signed form, an ID copy) whose bytes (sha256) no earlier mail carried: a person sending
    what was asked for, whose answer the one-per-purpose limit must not silence (a loop
    resends what it got, or nothing). Logos and unrecognised files do not count."""
    if message_pk is None:
        return False
    hashes = set(session.exec(select(AttachmentRecord.sha256).where(AttachmentRecord.message_pk == message_pk,
                                                                    col(AttachmentRecord.document).is_not(None))))
    if not hashes:
        return False
    seen = set(session.exec(select(AttachmentRecord.sha256).where(col(AttachmentRecord.sha256).in_(hashes),
                                                                  AttachmentRecord.message_pk != message_pk)))
    return bool(hashes - seen)


def _note_limit(session: Session, draft: Draft, since: dt.datetime, limits: Limits) -> str | None:
    """Notes to staff come one per dossier (or per sender, for mail in no dossier) a day to each
    team: the mail held back is listed in the next digest, which shows every mail that needs a
    person."""
    notes = select(OutboxMail.id).where(OutboxMail.purpose == draft.purpose, OutboxMail.created_at > since,
                                        _same_dossier(draft.dossier_id))
    if draft.to:  # the same team's mailbox: BOSA's staff are told of what came into BOSA's inbox
        notes = notes.where(col(OutboxMail.id).in_(
            select(OutboxAddress.outbox_id).where(OutboxAddress.role == "to",
                                                  OutboxAddress.address == normalise_address(draft.to[0]))))
    if draft.dossier_id is not None:
        if _count(session, notes) >= limits.notes_per_dossier_per_day:
            return ("limit: a note to staff on this dossier already went in the last 24 hours "
                    "(the digest lists this mail)")
        return None
    if draft.about:
        about = notes.join(OutboxAddress, col(OutboxAddress.outbox_id) == OutboxMail.id).where(
            OutboxAddress.role == "about", OutboxAddress.address == normalise_address(draft.about))
        if _count(session, about) >= limits.notes_per_sender_per_day:
            return ("limit: a note to staff on this sender's mail in no dossier already went in the last 24 hours "
                    "(the digest lists this mail)")
    if _count(session, notes) >= limits.notes_outside_dossiers_per_day:
        return (f"limit: {limits.notes_outside_dossiers_per_day} notes to staff on mail in no dossier in the last "
                "24 hours (the digest lists this mail)")
    return None


def enqueue(session: Session, draft: Draft, now: dt.datetime, limits: Limits,
            shadow: bool = False) -> OutboxMail | None:
    """Add the mail to the outbox (SHADOW in shadow mode, else PENDING), or record why not."""
    if reason := limit_reason(session, draft, now, limits):
        session.add(Decision(message_pk=draft.cause_pk, dossier_id=draft.dossier_id, at=now,
                             purpose=draft.purpose, answered=False, reason=reason))
        return None
    state = OutboxState.SHADOW if shadow and draft.client_mail else OutboxState.PENDING
    mail = OutboxMail(
        message_id=new_message_id(draft.sender), purpose=draft.purpose, dossier_id=draft.dossier_id,
        cause_pk=draft.cause_pk, sender=draft.sender, recipients=json.dumps(list(draft.to)),
        cc=json.dumps(list(draft.cc)), subject=" ".join(draft.subject.split())[:300],
        language=draft.rendered.language, body_text=draft.rendered.text, body_html=draft.rendered.html,
        in_reply_to=draft.in_reply_to, references=" ".join(f"<{r}>" for r in draft.references[-20:]),
        detail=json.dumps(draft.detail, ensure_ascii=False, default=str), created_at=now, state=state.value)
    session.add(mail)
    session.flush()  # its id, for its addresses
    assert mail.id is not None  # given by the flush
    roles = [("to", a) for a in draft.to] + [("cc", a) for a in draft.cc] \
        + ([("about", draft.about)] if draft.about else [])
    for role, address in dict.fromkeys((role, normalise_address(a)) for role, a in roles):
        session.add(OutboxAddress(outbox_id=mail.id, role=role, address=address, created_at=now))
    session.add(Decision(message_pk=draft.cause_pk, dossier_id=draft.dossier_id, at=now, purpose=draft.purpose,
                         answered=True, reason=f"{draft.purpose} to {', '.join(draft.to)}"))
    return mail


# --- the sender's moves: each its own transaction ------------------------------------------------

def claim(engine: Engine, now: dt.datetime) -> OutboxMail | None:
    """The next mail due, moved to SENDING -- in one call: during a backlog each call waits
    behind a mail of the pipeline on the database thread."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.exec(select(OutboxMail).where(OutboxMail.state == OutboxState.PENDING.value,
                                                    or_(col(OutboxMail.not_before).is_(None),
                                                        col(OutboxMail.not_before) <= now))
                           .order_by(col(OutboxMail.id)).limit(1)).first()  # LIMIT: .first() alone loads every row
        if row is not None:
            _enter(row, OutboxState.SENDING)
            row.last_error, row.not_before = "", None
            session.add(row)
            session.commit()
        return row


def mark_handed(connection: Connection, row_id: int) -> None:
    """SENDING -> HANDED on the caller's connection, which commits it (the sender writes the
    final dot right after its commit). One UPDATE guarded by the state: no read before it."""
    result = connection.execute(update(OutboxMail)
                                .where(col(OutboxMail.id) == row_id, col(OutboxMail.state) == OutboxState.SENDING.value)
                                .values(state=OutboxState.HANDED.value, last_error="", not_before=None))
    if result.rowcount != 1:
        raise OutboxStateError(f"outbox mail {row_id}: only a mail being sent can be handed over")


def move(engine: Engine, row_id: int, target: OutboxState, error: str, now: dt.datetime, *,
         attempts: int | None = None, not_before: dt.datetime | None = None, copy_owed: bool = False) -> None:
    """Move a claimed mail on (see TRANSITIONS), with why; `now` is its sent time when SENT."""
    with Session(engine) as session:
        row = session.get(OutboxMail, row_id)
        if row is None:
            raise OutboxStateError(f"outbox mail {row_id}: not in the outbox")
        _enter(row, target)
        row.last_error, row.not_before, row.copy_owed = error, not_before, copy_owed
        if attempts is not None:
            row.attempts = attempts
        if target is OutboxState.SENT:
            row.sent_at = now
        session.add(row)
        session.commit()


def send_again(session: Session, row: OutboxMail, now: dt.datetime) -> None:
    """A person sends a refused mail again (the address was fixed, the server's refusal was
    passing): back to PENDING with its Message-ID, so the recipient can still tell copies apart."""
    if row.state != OutboxState.FAILED:
        raise OutboxStateError(f"outbox mail {row.id}: {row.state}, not failed: nothing to send again")
    row.state = OutboxState.PENDING.value
    row.attempts, row.not_before, row.last_error = 0, now, ""
    session.add(row)


def in_state(engine: Engine, state: OutboxState) -> list[OutboxMail]:
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(OutboxMail).where(OutboxMail.state == state.value)
                                 .order_by(col(OutboxMail.id))))


def owing_copies(engine: Engine, limit: int = 20) -> list[OutboxMail]:
    """Sent mail whose copy the sent folder did not take yet."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.exec(select(OutboxMail).where(OutboxMail.copy_owed == True)  # noqa: E712
                                 .order_by(col(OutboxMail.id)).limit(limit)))


def copy_added(engine: Engine, row_id: int) -> None:
    with engine.begin() as connection:
        connection.execute(update(OutboxMail).where(col(OutboxMail.id) == row_id).values(copy_owed=False))


# --- what the others read -------------------------------------------------------------------------

def unsent_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(OutboxMail)
                        .where(col(OutboxMail.state).in_([s.value for s in UNSENT]))).one()


def counts(session: Session) -> dict[str, int]:
    """Mails per state (only the states that have some)."""
    return dict(session.exec(select(OutboxMail.state, func.count()).group_by(OutboxMail.state)).all())


def copies_owed_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(OutboxMail).where(OutboxMail.copy_owed == True)).one()  # noqa: E712


def shadow_since(session: Session, since: dt.datetime) -> list[OutboxMail]:
    """What shadow mode kept back since `since`, for the staff's digest."""
    return list(session.exec(select(OutboxMail).where(OutboxMail.state == OutboxState.SHADOW.value,
                                                      OutboxMail.created_at >= since)))


def written_after(session: Session, last_id: int) -> list[OutboxMail]:
    """Every mail written to the outbox after the one numbered `last_id`, in order."""
    return list(session.exec(select(OutboxMail).where(col(OutboxMail.id) > last_id).order_by(col(OutboxMail.id))))


def written_since(session: Session, purpose: str, since: dt.datetime) -> bool:
    return session.exec(select(OutboxMail.id).where(OutboxMail.purpose == purpose,
                                                    OutboxMail.created_at >= since)).first() is not None
