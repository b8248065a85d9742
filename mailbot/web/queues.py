"""What waits for a person outside the dossiers' own pages: the quarantine, the outbox (pending,
failed, sent without their copy in the Sent folder yet) and the mail that needs a person."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import or_
from sqlmodel import Session, col, select

from mailbot.answers.digest import needs_person_reason
from mailbot.answers.reasons import Reason
from mailbot.outbox import UNSENT, OutboxState
from mailbot.store.folders import still_on_server
from mailbot.store.models import Dossier, Message, OutboxMail
from mailbot.web.attention import waiting
from mailbot.web.scope import Scope

LIMIT = 200  # rows a queue page shows: the quarantine and outbox oldest first, the mail to look at newest first


@dataclass(frozen=True)
class MailRow:
    message_pk: int
    received_at: dt.datetime
    sender: str
    subject: str
    kind: str | None
    reason: Reason | str
    dossier: str | None
    attempts: int = 0
    takeable: bool = True  # a watcher can fetch it again (the quarantine's release)


@dataclass(frozen=True)
class OutRow:
    outbox_id: int
    created_at: dt.datetime
    purpose: str
    to: str
    subject: str
    state: str
    attempts: int
    last_error: str
    dossier: str | None
    copy_owed: bool


def _references(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    return {i: r for i, r in session.exec(select(Dossier.id, Dossier.reference).where(col(Dossier.id).in_(wanted)))
            if i is not None}


def _mail_rows(session: Session, messages: list[Message],
               watched: tuple[tuple[str, str], ...] | None = None) -> list[MailRow]:
    refs = _references(session, {m.dossier_id for m in messages})
    rows = []
    for m in messages:
        assert m.id is not None  # read back
        reason = needs_person_reason(m) or m.status_reason
        rows.append(MailRow(m.id, m.received_at, m.sender or "", m.subject, m.kind, reason,
                            refs.get(m.dossier_id) if m.dossier_id else None, m.attempts,
                            watched is None or still_on_server(session, m.id, watched)))
    return rows


def quarantine(session: Session, scope: Scope, watched: tuple[tuple[str, str], ...]) -> list[MailRow]:
    return _mail_rows(session, list(session.exec(
        select(Message).where(Message.status == "quarantined", scope.message_seen())
        .order_by(col(Message.received_at)).limit(LIMIT))), watched)


def needing_person(session: Session, scope: Scope) -> list[MailRow]:
    return _mail_rows(session, list(session.exec(
        select(Message).where(waiting(session), scope.message_seen())
        .order_by(col(Message.received_at).desc()).limit(LIMIT))))


def outbox_rows(session: Session, scope: Scope) -> list[OutRow]:
    states = [*(s.value for s in UNSENT), OutboxState.FAILED.value]
    mails = [o for o in session.exec(select(OutboxMail).where(or_(col(OutboxMail.state).in_(states),
                                                                  col(OutboxMail.copy_owed)))
                                     .order_by(col(OutboxMail.id)).limit(LIMIT)) if scope.sees(o)]
    refs = _references(session, {o.dossier_id for o in mails})
    out = []
    for o in mails:
        assert o.id is not None  # read back
        out.append(OutRow(o.id, o.created_at, o.purpose, ", ".join(json.loads(o.recipients)), o.subject, o.state,
                          o.attempts, o.last_error, refs.get(o.dossier_id) if o.dossier_id else None, o.copy_owed))
    return out
