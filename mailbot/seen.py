"""Where a mail was seen: what the watchers (IMAP, replay) hand the pipeline with its bytes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """Where a mail was seen: a watched mailbox, a folder and, on IMAP, its UIDVALIDITY and UID,
    and when the server received it (INTERNALDATE: mail from before the first start is history)."""
    mailbox: str
    folder: str = "INBOX"
    uidvalidity: int | None = None
    uid: int | None = None
    arrived: dt.datetime | None = None
