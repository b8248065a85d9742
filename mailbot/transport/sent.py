"""The sent folder, as the outbox sender sees it: one protocol, injected into the sender.

After a crash the sender looks a mail up there to know whether it left; a copy of each mail
sent goes there for people to see, unless the SMTP server files its own (`smtp.saves_to_sent`).
Without an IMAP mailbox to send from there is no such folder: `NullSentFolder`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class Filing(StrEnum):
    """Who puts a copy of each mail sent into the sent folder."""
    NOBODY = "nobody"  # no sent folder: nothing looked up, no copies
    SERVER = "server"  # the SMTP server files every mail it takes: a mail not there was not taken
    BOT = "bot"  # the sender appends a copy of each mail once the server took it


class SentFolder(Protocol):
    filing: Filing

    async def find(self, message_id: str) -> bool | None:
        """True: there; False: not there; None: could not look."""

    async def add(self, message_id: str, raw: bytes, look_first: bool = False) -> bool:
        """Append `raw` (Message-ID `message_id`); False when it was there already. Raises
        TransportError when it could not be added."""

    async def close(self) -> None:
        """Close the connection (it is opened again when used)."""


class NullSentFolder:
    """No sent folder: nothing is found, nothing is owed."""
    filing = Filing.NOBODY

    async def find(self, message_id: str) -> bool | None:
        return None

    async def add(self, message_id: str, raw: bytes, look_first: bool = False) -> bool:
        return False

    async def close(self) -> None:
        return None
