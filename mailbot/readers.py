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
import os
import threading
import time
import types
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from pebble import ProcessExpired, ProcessPool

from mailbot.forms import FormRules
from mailbot.mail.documents import DocumentRules, Looked, look_at
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


@dataclass(frozen=True)
class Unreadable:
    """A mail that cannot be read at all (it made the reader process fail twice): recorded from its
    head and set aside at once, with the reason."""
    reason: str


def read_mail(raw: bytes, form_rules: FormRules, document_rules: DocumentRules) -> Read:
    mail = parse_mail(raw)
    return Read(mail, look_at(mail, form_rules, document_rules))


_rules: tuple | None = None  # in the worker: the daemon's own form and document rules


def _start(form_rules: FormRules, document_rules: DocumentRules, daemon: int) -> None:
    global _rules  # noqa: PLW0603 - set once per reader process, by its initializer
    _rules = (form_rules, document_rules)
    # The daemon's pid, not getppid(): the daemon may be gone before this runs.
    threading.Thread(target=_exit_with, args=(daemon,), daemon=True, name="orphan-watch").start()


def _exit_with(parent: int) -> None:
    """A worker may not see its daemon go (kill -9, a crash) while it works or waits: it would
    hold its memory for nothing. It leaves when adopted."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _read(raw: bytes) -> Read:
    assert _rules is not None  # set by _start, the worker's initializer
    return read_mail(raw, *_rules)


GAVE_UP = "reading the mail made the reader process fail (memory, a crash or no end in a parser)"
READ_TIMEOUT_SECONDS = 120  # a mail takes milliseconds; a reader still at it is stuck


class Readers:
    """A pool of `workers` reader processes, started when a batch of mail comes and stopped once
    idle (at rest the daemon has no worker: a mail alone is read in-process, at once -- live mail
    thus has no process of its own to crash in; a backlog has).
    `submit` a mail early, `result` when it is its turn. The workers get the daemon's rules as
    loaded at its start (a rules file edited since, or half-written, cannot break them).
    pebble's pool replaces a worker that dies, and stops one that reads a mail longer than
    READ_TIMEOUT_SECONDS: only that mail fails with it."""

    def __init__(self, form_rules: FormRules, document_rules: DocumentRules, workers: int) -> None:
        self.args = (form_rules, document_rules, os.getpid())
        self.workers = workers
        self.pool: ProcessPool | None = None
        self.last_used = 0.0
        self._alone = asyncio.Lock()

    def _pool(self) -> ProcessPool:
        """The pool, a new one if there is none or it broke (pebble gives up on a pool whose
        workers all died at once)."""
        if self.pool is not None and not self.pool.active:
            self._retire(self.pool, finish=False)
            self.pool = None
        if self.pool is None:
            # spawn: the daemon runs threads, which a forked child must not inherit.
            self.pool = ProcessPool(self.workers, initializer=_start, initargs=self.args,
                                    context=multiprocessing.get_context("spawn"))
        return self.pool

    @staticmethod
    def _retire(pool: ProcessPool, finish: bool) -> None:
        """Let the pool's workers go, in the background: once they `finish` what they have, or now."""
        if finish:
            pool.close()
        else:
            pool.stop()
        threading.Thread(target=pool.join, name="readers-closing", daemon=True).start()

    def submit(self, raw: bytes) -> Future | None:
        """The mail's reading, scheduled; None: read it in-process (no workers, or no pool)."""
        if not self.workers:
            return None
        self.last_used = time.monotonic()
        for _ in range(2):
            try:
                return self._pool().schedule(_read, (raw,), timeout=READ_TIMEOUT_SECONDS)
            except RuntimeError:  # the pool broke just now, or could not start: a new one
                if self.pool is not None:
                    self._retire(self.pool, finish=False)
                self.pool = None
        log.warning("reader process not available: reading in-process")
        return None

    def close_if_idle(self, seconds: float) -> None:
        """Stop the workers when nothing was submitted for `seconds` (what they still have, they
        finish first)."""
        if self.pool is not None and time.monotonic() - self.last_used > seconds:
            self._retire(self.pool, finish=True)
            self.pool = None

    async def result(self, future: Future | None, raw: bytes) -> Read | Unreadable | None:
        """The mail read ahead; None: read it in-process; Unreadable: why it cannot be read at all.
        A worker that dies fails every mail it had: each is read again alone (one at a time,
        whichever watcher it came from), and only one that kills a worker again is given up."""
        if future is None:
            return None
        try:
            return await self._wait(future)
        except _Lost:
            log.warning("reader process died; reading the mail again alone")
        async with self._alone:
            future = self.submit(raw)
            if future is None:
                return None
            try:
                return await self._wait(future)
            except _Lost:
                log.warning("reader process died again on the same mail: set aside")
                return Unreadable(GAVE_UP)

    async def _wait(self, future: Future) -> Read | None:
        try:
            return await asyncio.wrap_future(future)
        except ProcessExpired as exc:
            raise _Lost from exc
        except TimeoutError as exc:  # pebble stopped the worker (and started another)
            log.warning("reader process stuck on a mail: stopped", extra={"seconds": READ_TIMEOUT_SECONDS})
            raise _Lost from exc
        except BrokenProcessPool as exc:  # every worker died at once: the next submit makes a new pool
            raise _Lost from exc
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise  # our own task is being cancelled
            raise _Lost from None  # its pool was stopped under it
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle: read in-process
            log.warning("reader failed", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
            return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool.join()
            self.pool = None


class _Lost(Exception):
    """The reader process went away with the mail."""
