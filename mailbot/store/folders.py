"""Where each watched folder stands: per mailbox and folder its UIDVALIDITY, the last UID taken,
the last contact and the last error (the FolderState rows)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from sqlalchemy import and_, false, or_
from sqlmodel import Session, col, select

from mailbot.store.models import FolderState, Message, Sighting


class FolderStateStore:
    """FolderState rows, written through the daemon's single database thread."""

    def __init__(self, engine, run_db: Callable, clock: Callable[[], dt.datetime],
                 watched: Iterable[tuple[str, str]]) -> None:
        self.engine, self.run_db, self.clock = engine, run_db, clock
        self.watched = tuple(watched)  # (mailbox, folder): Settings.watched_folders()

    def _row(self, session: Session, mailbox: str, folder: str) -> FolderState:
        row = session.exec(select(FolderState).where(FolderState.mailbox == mailbox,
                                                     FolderState.folder == folder)).first()
        if row is None:
            row = FolderState(mailbox=mailbox, folder=folder)
            session.add(row)
        return row

    def _update(self, mailbox: str, folder: str, change: Callable[[FolderState], None]) -> FolderState:
        with Session(self.engine, expire_on_commit=False) as session:
            row = self._row(session, mailbox, folder)
            change(row)
            session.add(row)
            session.commit()
            return row

    async def load(self, mailbox: str, folder: str) -> FolderState:
        return await self.run_db(self._update, mailbox, folder, lambda row: None)

    async def reset(self, mailbox: str, folder: str, uidvalidity: int) -> None:
        def change(row: FolderState) -> None:
            row.uidvalidity, row.last_uid = uidvalidity, 0
        await self.run_db(self._update, mailbox, folder, change)

    async def advance(self, mailbox: str, folder: str, uidvalidity: int, uid: int) -> None:
        def change(row: FolderState) -> None:
            row.uidvalidity, row.last_uid = uidvalidity, max(row.last_uid, uid)
            row.last_contact, row.last_error = self.clock(), ""
        await self.run_db(self._update, mailbox, folder, change)

    async def contact(self, mailbox: str, folder: str) -> None:
        def change(row: FolderState) -> None:
            row.last_contact, row.last_error = self.clock(), ""
        await self.run_db(self._update, mailbox, folder, change)

    async def error(self, mailbox: str, folder: str, reason: str) -> None:
        def change(row: FolderState) -> None:
            row.last_error = reason
        await self.run_db(self._update, mailbox, folder, change)

    async def released(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> list[int]:
        """UIDs already passed whose mail waits to be taken again: let out of the quarantine by a
        person (the staff page), or left half-done by a crash."""
        def read() -> list[int]:
            with Session(self.engine) as session:
                return sorted({uid for uid in session.exec(
                    select(Sighting.uid).join(Message, col(Message.id) == Sighting.message_pk)
                    .where(col(Message.status) == "received", col(Sighting.mailbox) == mailbox,
                           col(Sighting.folder) == folder, col(Sighting.uidvalidity) == uidvalidity,
                           col(Sighting.uid) <= last_uid)) if uid is not None})
        return await self.run_db(read)

    async def gone(self, mailbox: str, folder: str, uidvalidity: int, uids: list[int], reason: str) -> None:
        """Mail taken again that the server no longer has in this folder: its sighting here is
        marked gone (no UIDVALIDITY: no watcher looks for it here again), and the mail goes back
        to the quarantine, saying so -- unless a copy seen in another watched folder may still
        bring it (the client wrote to both mailboxes): that folder's watcher takes it, or finds
        it gone too."""
        def change() -> None:
            with Session(self.engine) as session:
                here = list(session.exec(select(Sighting).join(Message, col(Message.id) == Sighting.message_pk)
                                         .where(col(Message.status) == "received", col(Sighting.mailbox) == mailbox,
                                                col(Sighting.folder) == folder,
                                                col(Sighting.uidvalidity) == uidvalidity,
                                                col(Sighting.uid).in_(uids))))
                for sighting in here:
                    sighting.uidvalidity = None
                    session.add(sighting)
                session.flush()
                for pk in {s.message_pk for s in here}:
                    if still_on_server(session, pk, self.watched):
                        continue  # elsewhere still: taken from there
                    msg = session.get(Message, pk)
                    assert msg is not None  # its sighting was just read with it
                    msg.status, msg.status_reason = "quarantined", reason
                    session.add(msg)
                session.commit()
        await self.run_db(change)


def still_on_server(session: Session, message_pk: int, watched: Iterable[tuple[str, str]]) -> bool:
    """Whether a watcher can fetch the mail again: it was seen at a UID already passed in a folder
    still watched ((mailbox, folder) in `watched`) whose UIDVALIDITY has not changed since."""
    in_watched = or_(false(), *(and_(col(Sighting.mailbox) == mailbox, col(Sighting.folder) == folder)
                                for mailbox, folder in watched))
    return session.exec(select(Sighting.id).join(FolderState, and_(
        col(FolderState.mailbox) == Sighting.mailbox, col(FolderState.folder) == Sighting.folder,
        col(FolderState.uidvalidity) == Sighting.uidvalidity))
        .where(col(Sighting.message_pk) == message_pk, col(Sighting.uid) <= FolderState.last_uid, in_watched)
    ).first() is not None
