"""Where each watched folder stands: per mailbox and folder its UIDVALIDITY, the last UID taken,
the last contact and the last error (the FolderState rows)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlmodel import Session, col, select

from mailbot.store.models import FolderState, Message, Sighting


class FolderStateStore:
    """FolderState rows, written through the daemon's single database thread."""

    def __init__(self, engine, run_db: Callable, clock: Callable[[], dt.datetime]) -> None:
        self.engine, self.run_db, self.clock = engine, run_db, clock

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
        """Mail taken again that the server no longer has: back in the quarantine, saying so."""
        def change() -> None:
            with Session(self.engine) as session:
                for msg in session.exec(select(Message).join(Sighting, col(Sighting.message_pk) == Message.id)
                                        .where(col(Message.status) == "received", col(Sighting.mailbox) == mailbox,
                                               col(Sighting.folder) == folder,
                                               col(Sighting.uidvalidity) == uidvalidity,
                                               col(Sighting.uid).in_(uids))):
                    msg.status, msg.status_reason = "quarantined", reason
                    session.add(msg)
                session.commit()
        await self.run_db(change)
