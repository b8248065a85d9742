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
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

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
    global _rules
    _rules = (form_rules, document_rules)
    # The daemon's pid, not getppid(): the daemon may be gone before this runs.
    threading.Thread(target=_exit_with, args=(daemon,), daemon=True, name="orphan-watch").start()


def _exit_with(parent: int) -> None:
    """A worker holds both ends of its task queue, so it never sees its daemon go (kill -9, a
    crash): it would wait for work forever, holding its memory. It leaves when adopted."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _read(raw: bytes) -> Read:
    return read_mail(raw, *_rules)


GAVE_UP = "reading the mail made the reader process fail (memory, a crash or no end in a parser)"
READ_TIMEOUT_SECONDS = 120  # a mail takes milliseconds; a reader still at it is stuck


class Readers:
    """A pool of `workers` reader processes, started when a batch of mail comes and stopped once
    idle (at rest the daemon has no worker: a mail alone is read in-process, at once -- live mail
    thus has no process of its own to crash in; a backlog has).
    `submit` a mail early, `result` when it is its turn. The workers get the daemon's rules as
    loaded at its start (a rules file edited since, or half-written, cannot break them)."""

    def __init__(self, form_rules: FormRules, document_rules: DocumentRules, workers: int) -> None:
        self.args = (form_rules, document_rules, os.getpid())
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.last_used = 0.0
        self._pool_of: weakref.WeakKeyDictionary[Future, ProcessPoolExecutor] = weakref.WeakKeyDictionary()
        self._alone = asyncio.Lock()

    def _open(self) -> ProcessPoolExecutor:
        # spawn: the daemon runs threads, which a forked child must not inherit.
        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start, initargs=self.args)
        return self.pool

    def _replace(self, broken: ProcessPoolExecutor | None, kill: bool = False) -> ProcessPoolExecutor:
        """A working pool: a new one if `broken` is still the current one (the watchers share
        the pool: the first to see it broken replaces it, the others use the new one)."""
        if self.pool is None or self.pool is broken:
            if self.pool is not None:
                if kill:  # a worker stuck on a mail; ProcessPoolExecutor.terminate_workers() is 3.14+
                    for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                        process.kill()
                self.pool.shutdown(wait=False, cancel_futures=True)
            return self._open()
        return self.pool

    def submit(self, raw: bytes) -> Future | None:
        if not self.workers:
            return None
        self.last_used = time.monotonic()
        pool = self.pool or self._open()
        try:
            future = pool.submit(_read, raw)
        except BrokenProcessPool:
            pool = self._replace(pool)
            future = pool.submit(_read, raw)
        self._pool_of[future] = pool
        return future

    def close_if_idle(self, seconds: float) -> None:
        """Stop the workers when nothing was submitted for `seconds` (what they still have, they
        finish first)."""
        if self.pool is not None and time.monotonic() - self.last_used > seconds:
            self.pool.shutdown(wait=False)
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
            try:
                return await self._wait(future)
            except _Lost:
                log.warning("reader process died again on the same mail: set aside")
                self._replace(self._pool_of.get(future))
                return Unreadable(GAVE_UP)

    async def _wait(self, future: Future) -> Read | None:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), READ_TIMEOUT_SECONDS)
        except BrokenProcessPool as exc:
            self._replace(self._pool_of.get(future))
            raise _Lost from exc
        except asyncio.TimeoutError as exc:
            log.warning("reader process stuck on a mail: stopped", extra={"seconds": READ_TIMEOUT_SECONDS})
            self._replace(self._pool_of.get(future), kill=True)
            raise _Lost from exc
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # our own task is being cancelled
            raise _Lost from None  # its pool was shut down under it
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle: read in-process
            log.warning("reader failed", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
            return None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _Lost(Exception):
    """The reader process went away with the mail."""
