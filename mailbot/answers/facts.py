"""What the store says about a mail before its answers are decided: the only reads the decision
(answers/plan.py, pure) needs, done once, up front."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session, col, select

from mailbot.answers.purposes import Purpose
from mailbot.dossiers.process import is_linked, linked_contacts
from mailbot.mail.model import ParsedMail
from mailbot.store.models import OutboxMail
from mailbot.understanding import Understanding

MAX_THREAD_IDS = 50  # of References, the newest: a hostile mail may name thousands


@dataclass(frozen=True)
class RepliedTo:
    """The bot's own answer a mail replies to."""
    purpose: Purpose
    seconds: float  # from when it went (or was written, if not yet sent) to the reply


@dataclass(frozen=True)
class Facts:
    # The sender is among the dossier's contacts, as this mail left them (it may have linked a
    # colleague, or a stranger its order form names); "linked before this mail" is the
    # understanding's `unlinked_sender`, and the privacy rule wants both.
    linked: bool
    replied_to: RepliedTo | None
    # The dossier's linked addresses (not its contacts of record): who hears of a held change.
    linked_contacts: tuple[str, ...] = ()


def read_facts(session: Session, u: Understanding, at: dt.datetime) -> Facts:
    linked = u.dossier is not None and is_linked(session, u.dossier, u.mail.sender)
    answer = replied_answer(session, u.mail)
    replied = None if answer is None else \
        RepliedTo(Purpose(answer.purpose), (at - (answer.sent_at or answer.created_at)).total_seconds())
    held = u.change is not None and u.change.held is not None
    contacts = tuple(linked_contacts(session, u.dossier)) if held and u.dossier is not None else ()
    return Facts(linked, replied, contacts)


def replied_answer(session: Session, mail: ParsedMail) -> OutboxMail | None:
    """The bot's own mail (an outbox row) that this mail replies to: the one In-Reply-To names,
    else the newest one References names."""
    direct = mail.in_reply_to[:5]
    ids = list(dict.fromkeys((*direct, *mail.references[-MAX_THREAD_IDS:])))
    if not ids:
        return None
    rows = session.exec(select(OutboxMail).where(col(OutboxMail.message_id).in_(ids))).all()
    if not rows:
        return None
    return max([r for r in rows if r.message_id in direct] or rows, key=lambda r: r.id or 0)  # read back: never None
