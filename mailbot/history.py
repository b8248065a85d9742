"""The first start on mailboxes that already hold years of mail: what came before it is history.

The daemon records its first start on a database once (the `installation` row); a restart is
not a first start. Mail that reached a mailbox before then -- its IMAP INTERNALDATE -- or before
`[daemon] history_before` when that is set, is filed silently: recorded and read, its dossier
built, its events and deadlines dated when it came, and nothing sent (a Decision says why). A
deadline that ran out before the cut-off is marked "imported": never warned about nor
escalated, yet met all the same by the mail that meets it. Reminders count from the cut-off at
the earliest (answers/scheduled.py). Each team's digest lists once the dossiers opened from
history that are still open, for staff to review. Replay and the demo record no first start:
nothing is history there.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailbot.config import Settings
from mailbot.seen import Seen
from mailbot.store.models import Deadline, Decision, Dossier, Event, Installation
from mailbot.understanding import Understanding

BRUSSELS = ZoneInfo("Europe/Brussels")
NOT_ANSWERED = "historical mail, before the bot's first start: not answered"
IMPORTED = "imported_from_history"  # the event of a dossier opened from history
LISTED = "history_listed"  # the event of its listing in a team's digest (detail: the team)
LAPSED = "imported"  # the state of a deadline that ran out before the cut-off


def first_start(engine: Engine, now: dt.datetime) -> tuple[dt.datetime, bool]:
    """When the daemon first started on this database -- recorded now if it never did -- and
    whether this start is that first one."""
    with Session(engine) as session:
        row = session.get(Installation, 1)
        if row is not None:
            return row.first_started_at, False
        # Whole seconds: INTERNALDATE has none smaller, and mail of the very second is new.
        at = now.replace(microsecond=0)
        session.add(Installation(id=1, first_started_at=at))
        try:
            session.commit()
        except IntegrityError:  # another daemon on the same database was first, a moment ago
            session.rollback()
            row = session.get(Installation, 1)
            if row is None:
                raise
            return row.first_started_at, False
        return at, True


def cutoff(first_started_at: dt.datetime, settings: Settings) -> dt.datetime:
    """Mail that reached the mailboxes before this is history."""
    return settings.daemon.history_before or first_started_at


def is_historical(seen: Seen, before: dt.datetime | None) -> bool:
    return before is not None and seen.arrived is not None and seen.arrived < before


def file_as_history(session: Session, u: Understanding, message_pk: int, at: dt.datetime,
                    before: dt.datetime | None) -> None:
    """In place of the answers: why none, the dossier marked for review when this mail opened
    it, and the deadlines that ran out before the cut-off set aside. The caller commits."""
    dossier = u.dossier
    session.add(Decision(message_pk=message_pk, dossier_id=dossier.id if dossier else None, at=at,
                         answered=False, reason=NOT_ANSWERED))
    if dossier is None or before is None:
        return
    assert dossier.id is not None  # flushed when it was opened
    if u.matched_by == "none":  # opened by this mail
        session.add(Event(dossier_id=dossier.id, at=at, kind=IMPORTED, message_pk=message_pk,
                          detail="opened from mail that came before the bot's first start; listed once in the "
                                 "digest for review"))
    first_day = before.astimezone(BRUSSELS).date()
    for deadline in session.exec(select(Deadline).where(Deadline.dossier_id == dossier.id, Deadline.state == "open",
                                                        Deadline.due < first_day)):
        deadline.state = LAPSED
        session.add(deadline)
        session.add(Event(dossier_id=dossier.id, at=at, kind="deadline_imported", message_pk=message_pk,
                          detail=f"{deadline.name}: due {deadline.due.isoformat()}, before the bot's first start: "
                                 "not warned about nor escalated"))


def to_review(session: Session, team: str) -> list[Dossier]:
    """The dossiers opened from history, still open, not yet listed in `team`'s digest."""
    imported = select(Event.dossier_id).where(Event.kind == IMPORTED)
    listed = select(Event.dossier_id).where(Event.kind == LISTED, Event.detail == team)
    return list(session.exec(select(Dossier).where(Dossier.access_sent == False,  # noqa: E712
                                                   col(Dossier.id).in_(imported), col(Dossier.id).not_in(listed))
                             .order_by(Dossier.reference)))


def mark_listed(session: Session, team: str, dossiers: list[Dossier], at: dt.datetime) -> None:
    """`team`'s digest listed these dossiers: it does not again."""
    for dossier in dossiers:
        assert dossier.id is not None  # read back
        session.add(Event(dossier_id=dossier.id, at=at, kind=LISTED, detail=team))
