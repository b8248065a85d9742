"""Write mails to the persistent outbox, within the caller's transaction, after the limits.

The Message-ID is fixed here, before sending: the sender can then tell, after a crash, whether
a mail it was sending did leave (it is in the sent folder) and never sends one twice.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, func, select

from mailbot.answers.render import Rendered
from mailbot.store.models import Decision, OutboxMail


@dataclass(frozen=True)
class Limits:
    per_purpose_per_day: int = 1  # answers of one purpose per address per dossier per day
    per_address_per_day: int = 10  # all answers to one address per day


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
    client_mail: bool = True  # limits apply to mail to clients, not to staff notes


def new_message_id(sender: str) -> str:
    domain = sender.rpartition("@")[2] or "mailbot.localhost"
    return f"mailbot.{uuid.uuid4().hex}@{domain}"


def limit_reason(session: Session, draft: Draft, now: dt.datetime, limits: Limits) -> str | None:
    """Why this draft must not go out (the RFC 3834 rate limits), or None."""
    if not draft.client_mail:
        return None
    since = now - dt.timedelta(days=1)
    for address in draft.to:
        pattern = f'%"{address}"%'
        same = select(func.count()).select_from(OutboxMail).where(
            OutboxMail.created_at > since, col(OutboxMail.recipients).like(pattern))
        if session.exec(same.where(OutboxMail.purpose == draft.purpose,
                                   OutboxMail.dossier_id == draft.dossier_id)).one() >= limits.per_purpose_per_day:
            return f"limit: a {draft.purpose} answer already went to {address} for this dossier in the last 24 hours"
        if session.exec(same).one() >= limits.per_address_per_day:
            return f"limit: {limits.per_address_per_day} answers to {address} in the last 24 hours"
    return None


def enqueue(session: Session, draft: Draft, now: dt.datetime, limits: Limits, shadow: bool = False) -> OutboxMail | None:
    """Add the mail to the outbox (state "shadow" in shadow mode), or record why not."""
    if reason := limit_reason(session, draft, now, limits):
        session.add(Decision(message_pk=draft.cause_pk, dossier_id=draft.dossier_id, at=now,
                             purpose=draft.purpose, answered=False, reason=reason))
        return None
    mail = OutboxMail(
        message_id=new_message_id(draft.sender), purpose=draft.purpose, dossier_id=draft.dossier_id,
        cause_pk=draft.cause_pk, sender=draft.sender, recipients=json.dumps(list(draft.to)),
        cc=json.dumps(list(draft.cc)), subject=" ".join(draft.subject.split())[:300],
        language=draft.rendered.language, body_text=draft.rendered.text, body_html=draft.rendered.html,
        in_reply_to=draft.in_reply_to, references=" ".join(f"<{r}>" for r in draft.references[-20:]),
        detail=json.dumps(draft.detail, ensure_ascii=False, default=str), created_at=now,
        state="shadow" if shadow and draft.client_mail else "pending")
    session.add(mail)
    session.add(Decision(message_pk=draft.cause_pk, dossier_id=draft.dossier_id, at=now, purpose=draft.purpose,
                         answered=True, reason=f"{draft.purpose} to {', '.join(draft.to)}"))
    return mail


def sent_event(mail: OutboxMail) -> dict[str, Any]:
    """The replay's `sent` line for an outbox mail."""
    detail = json.loads(mail.detail or "{}")
    event = {"event": "sent", "at": mail.created_at.isoformat(), "purpose": mail.purpose,
             "dossier": detail.pop("dossier", None), "to": json.loads(mail.recipients), "cc": json.loads(mail.cc),
             "subject": mail.subject, "language": mail.language.split("+")[0],
             "problems": detail.pop("problems", []), "message_id": mail.message_id}
    if mail.language == "fr+nl":
        event["bilingual"] = True
    if mail.state == "shadow":
        event["shadow"] = True
    event.update(detail)
    return event
