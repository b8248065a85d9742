"""Read every mail in a reader process, within bounds.

Parsing a mail and looking at its attachments (the form checker, PDF text) is pure and is most
of the CPU and memory a mail costs, and it is where hostile input strikes (a PDF bomb, a zip
bomb, a parser that never ends). Every mail the daemon takes, alone or in a batch, is read in a
worker process with a time bound per mail (`daemon.read_timeout_seconds`) and a memory bound
(`daemon.read_memory_mb`, the worker's address space): the database thread only records and
applies what comes back, `Read` or `Unreadable`, and never waits on an attachment. One worker
is kept warm (started with the daemon) so that a mail alone pays no process start. The worker
imports only what reading needs (no database, no templates): it costs less memory.
Replay reads in-process (mailbot/pipeline.py without `read`), with the same PDF bounds.
"""

from __future__ import annotations

import asyncio
import copyreg
import logging
import multiprocessing
import os
import resource
import threading
import time
import types
from collections.abc import Callable
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
    """A mail that cannot be read within the bounds (time, memory, or it made the reader process
    fail twice): recorded from its head and set aside at once, with the reason."""
    reason: str
    spent: bool = False  # the reader process reached its memory bound: it is replaced


def read_mail(raw: bytes, form_rules: FormRules, document_rules: DocumentRules) -> Read:
    mail = parse_mail(raw)
    return Read(mail, look_at(mail, form_rules, document_rules))


_rules: tuple | None = None  # in the worker: the daemon's own form and document rules


def _start(form_rules: FormRules, document_rules: DocumentRules, daemon: int, memory_bytes: int) -> None:
    global _rules  # noqa: PLW0603 - set once per reader process, by its initializer
    _rules = (form_rules, document_rules)
    import pypdf  # noqa: F401 - now rather than with the first PDF: the worker is warm
    # The memory bound: past it an allocation fails (MemoryError) instead of the daemon's
    # machine swapping; a C library may crash instead, which the pool sees as the worker's death.
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes if hard == resource.RLIM_INFINITY
                                            else min(memory_bytes, hard), hard))
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


def _bounded(read: Callable[[bytes], Read], raw: bytes, memory_mb: int) -> Read | Unreadable:
    """In the worker: one mail read, a MemoryError (the address-space bound) made its reason."""
    try:
        return read(raw)
    except MemoryError:
        pass  # out of the handler first: the traceback's frames (and what they hold) are freed
    return Unreadable(f"reading the mail needed more than the {memory_mb} MB the reader process may use", spent=True)


def _warm() -> None:
    """Nothing: scheduled at start so that the worker is up before the first mail."""


GAVE_UP = "reading the mail made the reader process fail twice (a crash in a parser, or killed)"


class Readers:
    """A pool of `workers` reader processes, started warm with the daemon and kept.
    `submit` a mail early, `result` when it is its turn. The workers get the daemon's rules as
    loaded at its start (a rules file edited since, or half-written, cannot break them).
    Per mail: past `timeout` seconds pebble stops the worker (and starts another) and the mail is
    Unreadable; past `memory_mb` it is Unreadable and the worker replaced; a worker that dies
    (a crash, the OOM killer) costs its mails a second reading, alone, and only a mail that kills
    a worker again is given up."""

    def __init__(self, form_rules: FormRules, document_rules: DocumentRules, workers: int,
                 timeout: float = 60.0, memory_mb: int = 1024) -> None:
        self.args = (form_rules, document_rules, os.getpid(), memory_mb * 1024 * 1024)
        self.workers = max(1, workers)
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.pool: ProcessPool | None = None
        self._alone = asyncio.Lock()

    def start(self) -> None:
        """Start the workers now (not with the first mail): a mail alone is read at once."""
        pool = self._pool()
        if pool is not None:
            try:
                pool.schedule(_warm)
            except (RuntimeError, OSError) as exc:  # the next submit tries a new pool
                log.warning("reader process not started", extra={"reason": f"{type(exc).__name__}: {exc}"[:200]})

    def _pool(self) -> ProcessPool | None:
        """The pool, a new one if there is none or it broke (pebble gives up on a pool whose
        workers all died at once); None: none could be started."""
        if self.pool is not None and not self.pool.active:
            self._retire(self.pool, finish=False)
            self.pool = None
        if self.pool is None:
            try:
                # spawn: the daemon runs threads, which a forked child must not inherit.
                self.pool = ProcessPool(self.workers, initializer=_start, initargs=self.args,
                                        context=multiprocessing.get_context("spawn"))
            except (OSError, RuntimeError) as exc:
                log.warning("reader process not started", extra={"reason": f"{type(exc).__name__}: {exc}"[:200]})
                return None
        return self.pool

    @staticmethod
    def _retire(pool: ProcessPool, finish: bool) -> None:
        """Let the pool's workers go, in the background: once they `finish` what they have, or now."""
        if finish:
            pool.close()
        else:
            pool.stop()
        threading.Thread(target=pool.join, name="readers-closing", daemon=True).start()

    def _renew(self) -> None:
        """A worker reached its memory bound: new workers for the next mails (the old ones
        finish the mails they already have, then go)."""
        if self.pool is not None:
            self._retire(self.pool, finish=True)
            self.pool = None
        self.start()

    def submit(self, raw: bytes) -> Future | None:
        """The mail's reading, scheduled; None: no reader process can be started (the mail is
        not read now: it stays on the server and is taken again after a pause)."""
        for _ in range(2):
            pool = self._pool()
            if pool is None:
                break
            try:
                return pool.schedule(_bounded, (_read, raw, self.memory_mb), timeout=self.timeout)
            except (RuntimeError, OSError):  # the pool broke just now, or could not start: a new one
                self._retire(pool, finish=False)
                self.pool = None
        log.warning("reader process not available: the mail is left for later")
        return None

    async def result(self, future: Future | None, raw: bytes) -> Read | Unreadable | None:
        """The mail read; Unreadable: why it cannot be read within the bounds; None: no reader
        process (the mail is left for later). A worker that dies fails every mail it had: each
        is read again alone (one at a time, whichever watcher it came from), and only one that
        kills a worker again is given up."""
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

    async def _wait(self, future: Future) -> Read | Unreadable:
        try:
            read = await asyncio.wrap_future(future)
        except ProcessExpired as exc:
            raise _Lost from exc
        except TimeoutError:  # pebble stopped the worker (and started another)
            log.warning("reader process stuck on a mail: stopped", extra={"seconds": self.timeout})
            return Unreadable(f"reading the mail took more than {self.timeout:g} s")
        except BrokenProcessPool as exc:  # every worker died at once: the next submit makes a new pool
            raise _Lost from exc
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is not None and task.cancelling():
                raise  # our own task is being cancelled
            raise _Lost from None  # its pool was stopped under it
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle: never read on the database thread
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.warning("reader failed", extra={"reason": reason})
            return Unreadable(f"the reader process failed on the mail ({reason})")
        if isinstance(read, Unreadable) and read.spent:
            log.warning("reader process out of memory on a mail: replaced", extra={"memory_mb": self.memory_mb})
            self._renew()
        return read

    def close(self) -> None:
        if self.pool is not None:
            self.pool.stop()
            self.pool.join()
            self.pool = None


class _Lost(Exception):
    """The reader process went away with the mail."""
