"""Read mails ahead in a worker process.

Parsing a mail and looking at its attachments (the form checker, PDF text) is pure and is most
of the CPU a mail costs: a worker process does it on the second core while the database thread
files the mail before, and the daemon's own process stays free for IMAP, SMTP and the store.
With no worker (`daemon.readers = 0`) the pipeline reads in-process, as replay does. The worker
imports only what reading needs (no database, no templates): it costs less memory.
"""

from __future__ import annotations

import asyncio
import copyreg
import logging
import multiprocessing
import types
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from mailbot.forms import FormRules, load_rules
from mailbot.mail.documents import DocumentRules, Looked, load_document_rules, look_at
from mailbot.mail.model import ParsedMail
from mailbot.mail.parse import parse_mail

log = logging.getLogger("mailbot.readers")


def _proxy(items: dict) -> types.MappingProxyType:
    return types.MappingProxyType(items)


# A parsed mail's headers are a read-only mapping, which pickle does not know: rebuild it.
copyreg.pickle(types.MappingProxyType, lambda proxy: (_proxy, (dict(proxy),)))


@dataclass(frozen=True)
class Read:
    """A mail parsed and its attachments' content looked at: the pure, costly part of the flow."""
    mail: ParsedMail
    looked: Looked


def read_mail(raw: bytes, form_rules: FormRules, document_rules: DocumentRules) -> Read:
    mail = parse_mail(raw)
    return Read(mail, look_at(mail, form_rules, document_rules))


_rules: tuple | None = None  # in the worker: the form and document rules, loaded once


def _start(form_rules: str, document_rules: str) -> None:
    global _rules
    _rules = (load_rules(Path(form_rules)), load_document_rules(Path(document_rules)))


def _read(raw: bytes) -> Read:
    return read_mail(raw, *_rules)


class Readers:
    """A pool of `workers` reader processes; `submit` a mail early, `result` when it is its turn."""

    def __init__(self, form_rules: Path, document_rules: Path, workers: int) -> None:
        self.args = (str(form_rules), str(document_rules))
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self._open()

    def _open(self) -> None:
        if self.workers:
            # spawn: the daemon runs threads, which a forked child must not inherit.
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start, initargs=self.args)

    def _restart(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self._open()

    def warm(self) -> None:
        """Start the worker now (imports and rules take a second), not at the first mail."""
        if self.pool is not None:
            self.pool.submit(_read, b"")

    def submit(self, raw: bytes) -> Future | None:
        if self.pool is None:
            return None
        try:
            return self.pool.submit(_read, raw)
        except BrokenProcessPool:
            self._restart()
            return self.pool.submit(_read, raw)

    async def result(self, future: Future | None, raw: bytes) -> Read | str | None:
        """The mail read ahead; None: read it in-process; a str: why it cannot be read at all.
        A worker that dies fails every mail it had: each is read again alone in a new worker,
        and only the one that kills that worker too is given up."""
        if future is None:
            return None
        for alone in (False, True):
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                log.warning("reader process died", extra={"alone": alone})
                self._restart()
                if alone:
                    return "reading the mail made the reader process fail (memory or a crash in a parser)"
                future = self.pool.submit(_read, raw)
            except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle: read in-process
                log.warning("reader failed", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
                return None
        return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
