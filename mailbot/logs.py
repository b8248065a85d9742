"""Structured logs: one line per event, `key=value` pairs, never a password or a message body.

Callers pass only identifiers (mailbox, UID, purpose, Message-ID, dossier) as `extra`.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        head = (f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname.lower()} {record.name} "
                f"{record.getMessage()!r}")
        return " ".join([head, *(f"{k}={v!r}" for k, v in fields.items())])


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("mailbot")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
