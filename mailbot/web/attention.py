"""Which mail waits for a person, in SQL (for lists of thousands) and with its reason (for the
page): the digest's rule (answers/digest.py needs_person_reason), less the mail a person has
dealt with on the staff page and the mail from before the bot's first start (history)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, not_, or_, true
from sqlmodel import Session, col, select

from mailbot.mail.kinds import Kind
from mailbot.store.models import Installation, Message, StaffAction

# A person's action on a mail that settles it (web/actions.py). A release settles it only while
# it waits to be taken again: back in the quarantine (it failed again, or it is gone from the
# server) or needing a person for another reason once processed, it is listed again.
SETTLING = ("handled", "linked_address")
RELEASED = "released"


def needs_person() -> ColumnElement[bool]:
    """The SQL form of needs_person_reason: a Message row a person should look at."""
    robots = (Kind.BOUNCE.value, Kind.AUTO_REPLY.value)
    return or_(
        col(Message.status) == "quarantined",
        and_(col(Message.sender_auth) != "", not_(col(Message.sender_authenticated)),
             or_(col(Message.kind).is_(None), col(Message.kind).not_in(robots))),
        col(Message.unlinked_sender),
        col(Message.kind).in_((Kind.UNRELATED.value, Kind.REPLY.value)),
        and_(col(Message.defects) != "", or_(col(Message.kind).is_(None), col(Message.kind) != Kind.SUBMISSION.value)),
    )


def not_settled() -> ColumnElement[bool]:
    return not_(select(StaffAction.id).where(
        StaffAction.message_pk == Message.id,
        or_(col(StaffAction.action).in_(SETTLING),
            and_(col(StaffAction.action) == RELEASED, col(Message.status) == "received"))).exists())


def since_first_start(session: Session) -> ColumnElement[bool]:
    """Mail that came once the bot was running: history waits for nobody."""
    first = session.exec(select(Installation.first_started_at)).first()
    return col(Message.received_at) >= first if first is not None else true()


def waiting(session: Session) -> ColumnElement[bool]:
    """A mail waiting for a person now."""
    return and_(needs_person(), not_settled(), since_first_start(session))
