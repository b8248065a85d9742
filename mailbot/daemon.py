"""`mailbot run`: the watchers, the outbox sender, the scheduler and the watchdog, in one loop.

Mail is processed by the same pipeline as the replay, one at a time in a single database
thread (SQLite has one writer; the IMAP connections have their own threads); every mail is
read first in the reader process, within bounds (mailbot/readers.py). SIGTERM or
SIGINT: stop taking mail, finish the mail in hand, flush the outbox once, exit 0.
The first start on a database is recorded: mail that came before it is history (history.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import signal
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from mailbot.answers.drafts import local_time
from mailbot.clock import Clock, system_clock
from mailbot.config import Settings
from mailbot.context import Context
from mailbot.history import cutoff, first_start
from mailbot.jobs import run_digest, run_retention, run_sweep
from mailbot.outbox import Draft, enqueue, written_since
from mailbot.pipeline import handle
from mailbot.readers import Read, Readers, Unreadable
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.folders import FolderStateStore
from mailbot.store.models import FolderState
from mailbot.transport.imap import FolderWatcher, ImapSentFolder
from mailbot.transport.oauth import TokenSources
from mailbot.transport.sent import Filing, NullSentFolder, SentFolder
from mailbot.transport.smtp import OutboxSender

log = logging.getLogger("mailbot.daemon")


@dataclass
class Daemon:
    settings: Settings
    clock: Clock = system_clock
    with_scheduler: bool = True  # the demo drives the jobs itself, on a simulated clock
    # Mail from before the first start is history; the demo, whose clock is not the server's, has none.
    history: bool = True
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    processed: int = 0
    web_any_port: bool = False  # the sandbox: the staff page on any free port if its own is taken

    def __post_init__(self) -> None:
        if self.settings.smtp is None:
            from mailbot.errors import ConfigError
            raise ConfigError("smtp: `mailbot run` needs an [smtp] section (see config.example.toml)")
        self.engine = open_database(self.settings.database.url)
        self.ctx = Context.load(self.settings, self.engine, max_attempts=self.settings.daemon.max_attempts)
        self.db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailbot-db")
        daemon = self.settings.daemon
        self.readers = Readers(self.ctx.form_rules, self.ctx.document_rules, daemon.readers,
                               daemon.read_timeout_seconds, daemon.read_memory_mb)
        self.state = FolderStateStore(self.engine, self.run_db, self.clock, self.settings.watched_folders())
        # A password, or an OAuthLogin (a use of a token source shared by identical oauth2 sections).
        tokens = TokenSources()
        self.passwords = {name: tokens.credential(box.imap, f"mailboxes.{name}.imap", box.imap.host)
                          for name, box in self.settings.mailboxes.items() if box.imap}
        self.sent_folder = self._sent_folder()
        smtp = self.settings.smtp
        self._watchers: list[FolderWatcher] = []
        # The staff page, when served beside the daemon: its socket bound now, so that a port in
        # use stops the start with a clear message.
        self.site: socket.socket | None = None
        if self.settings.web.serve:
            from mailbot.web.server import bind

            self.site = bind(self.settings, any_port_if_taken=self.web_any_port)
        self.sender = OutboxSender(self.engine, self.run_db, smtp,
                                   tokens.credential(smtp, "smtp", smtp.host) if smtp.user else None,
                                   self.settings.daemon, self.clock, self.stop, sent=self.sent_folder)

    async def run_db(self, fn: Callable, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.db, functools.partial(fn, *args, **kwargs))

    # --- mail in ---------------------------------------------------------------------------

    async def process(self, items: list[tuple[bytes, Seen]]) -> int:
        """Run the pipeline on a batch of mails in order, each read in the reader process (ahead,
        while the database files the ones before it); how many were committed. At a stop, the
        mail in hand is finished and the rest left for the next start."""
        # Reads no longer needed (at a stop, or once a mail was not taken) run to their end:
        # stopping a reader that began one would cost a new process.
        futures = [self.readers.submit(raw) for raw, _ in items]
        for n, ((raw, seen), future) in enumerate(zip(items, futures, strict=True)):
            if self.stop.is_set():
                return n
            read = await self.readers.result(future, raw)
            if read is None:  # no reader process: the mail stays on the server, taken again after a pause
                return n
            if not await self._process_one(raw, seen, read):
                return n
        return len(items)

    async def _process_one(self, raw: bytes, seen: Seen, read: Read | Unreadable) -> bool:
        """Run the pipeline, retrying a failing mail until it is quarantined; True once committed."""
        for _ in range(self.settings.daemon.max_attempts):
            try:
                outcome = await self.run_db(handle, raw, seen, self.clock(), self.ctx, read)
            except Exception as exc:  # noqa: BLE001 - the store itself failed: keep the mail on the server
                log.warning("not recorded", extra={"mailbox": seen.mailbox, "uid": seen.uid, "reason": repr(exc)[:200]})
                return False
            if outcome.failed is None or outcome.quarantined:
                self.processed += 1
                log.info("mail", extra={"mailbox": seen.mailbox, "folder": seen.folder, "uid": seen.uid,
                                        "kind": outcome.kind, "dossier": outcome.dossier,
                                        "duplicate": outcome.duplicate, "quarantined": bool(outcome.quarantined),
                                        "historical": outcome.historical})
                self.sender.wake.set()
                return True
        return True

    def watchers(self) -> list[FolderWatcher]:
        self._watchers = []
        for name, folder in self.settings.watched_folders():
            imap = self.settings.mailboxes[name].imap
            assert imap is not None  # a watched folder's mailbox is on IMAP
            self._watchers.append(FolderWatcher(name, folder, imap, self.passwords[name], self.process, self.state,
                                                self.settings.daemon, self.stop))
        return self._watchers

    def nudge(self) -> None:
        """The staff page beside the daemon released a mail or sent an answer again: the watchers
        and the sender look now. Thread-safe (the page's actions run in worker threads)."""
        for watcher in self._watchers:
            watcher.wake.set()
        self.loop.call_soon_threadsafe(self.sender.wake.set)

    # --- the sent folder, for the outbox sender -----------------------------------------------

    def _sent_folder(self) -> SentFolder:
        """The answering mailbox's sent folder, with one connection for all the sender's look-ups
        and copies (a login per mail was most of the cost of sending)."""
        name = self.settings.answers.from_mailbox
        box = self.settings.mailboxes[name]
        if box.imap is None:
            return NullSentFolder()
        filing = Filing.SERVER if self.settings.smtp and self.settings.smtp.saves_to_sent else Filing.BOT
        return ImapSentFolder(box.imap, self.passwords[name], box.imap.sent, filing,
                              self.settings.daemon.imap_timeout_seconds)

    # --- scheduled work -----------------------------------------------------------------------

    async def job(self, name: str) -> None:
        now = self.clock()
        calendar = self.ctx.calendars[self.settings.schedule.calendar]
        if not calendar.is_business_day(now.astimezone(self.settings.process.zone).date()):
            return  # no weekend or holiday mail
        await self.run_db({"sweep": run_sweep, "digest": run_digest}[name], self.ctx, now)
        self.sender.wake.set()

    def scheduler(self) -> AsyncIOScheduler:
        zone = self.settings.process.zone
        scheduler = AsyncIOScheduler(timezone=zone)
        schedule = self.settings.schedule
        for i, at in enumerate(schedule.sweep_times):
            scheduler.add_job(self.job, CronTrigger(day_of_week="mon-fri", hour=at.hour, minute=at.minute,
                                                    timezone=zone),
                              args=["sweep"], id=f"sweep-{i}", replace_existing=True, misfire_grace_time=3600,
                              coalesce=True)
        at = schedule.digest_time
        scheduler.add_job(self.job,
                          CronTrigger(day_of_week="mon-fri", hour=at.hour, minute=at.minute, timezone=zone),
                          args=["digest"], id="digest", replace_existing=True, misfire_grace_time=3600, coalesce=True)
        at = self.settings.retention.time
        scheduler.add_job(self.retention, CronTrigger(hour=at.hour, minute=at.minute, timezone=zone),
                          id="retention", replace_existing=True, misfire_grace_time=12 * 3600, coalesce=True)
        return scheduler

    async def retention(self) -> None:
        """Every day, holidays too: it mails nobody."""
        await self.run_db(run_retention, self.ctx, self.clock())

    async def catch_up(self) -> None:
        """After downtime: what is due comes from the database, so one sweep makes up for every
        missed one; today's digest is sent if its time passed while the bot was down."""
        now = self.clock().astimezone(self.settings.process.zone)
        schedule = self.settings.schedule
        if schedule.sweep_times and schedule.sweep_times[0] <= now.time() <= schedule.sweep_times[-1]:
            await self.job("sweep")
        if now.time() > schedule.digest_time and not await self.run_db(self._digest_sent_today, now):
            await self.job("digest")

    def _digest_sent_today(self, now: dt.datetime) -> bool:
        start = dt.datetime.combine(now.date(), dt.time(0), self.settings.process.zone)
        with Session(self.engine) as session:
            return written_since(session, "digest", start)

    async def watchdog(self) -> None:
        limit = dt.timedelta(minutes=self.settings.daemon.watchdog_minutes)
        started = self.clock()
        pause = min(60.0, limit.total_seconds() / 2)
        while not self.stop.is_set():
            try:
                await self.run_db(self._watch, started, limit)
            except SQLAlchemyError as exc:
                # The database failing (locked, full) is waited out, as the watchers and the
                # sender do: nothing was written, the next round looks again. The cause only:
                # SQLAlchemy's message carries the statement's parameters.
                cause = getattr(exc, "orig", None) or exc
                log.warning("database error", extra={"task": "watchdog",
                                                     "reason": f"{type(exc).__name__}: {str(cause)[:200]}"})
                wait = min(5.0, pause)
            else:
                self.sender.wake.set()
                wait = pause
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=wait)
            except TimeoutError:
                pass

    def _watch(self, started: dt.datetime, limit: dt.timedelta) -> None:
        now = self.clock()
        with Session(self.engine) as session:
            for row in session.exec(select(FolderState)):
                last = row.last_contact or started
                # Refused credentials do not mend by waiting: reported at once.
                refused = getattr(self.passwords.get(row.mailbox), "refused", None)
                down = now - last > limit or refused is not None
                if down == row.reported_down:
                    continue
                row.reported_down = down
                session.add(row)
                box = self.settings.mailboxes[row.mailbox]
                zone = self.settings.process.zone
                context = {"dossier": None, "now": local_time(now, zone), "down": down,
                           "mailbox": row.mailbox, "folder": row.folder, "error": row.last_error, "refused": refused,
                           "since": local_time(last, zone)}
                rendered = self.ctx.renderer.render("watchdog", box.language, context)
                to = tuple(dict.fromkeys((box.address,
                                          self.settings.mailboxes[self.settings.answers.from_mailbox].address)))
                enqueue(session, Draft("watchdog", self.settings.mailboxes[self.settings.answers.from_mailbox].address,
                                       to, (), rendered, f"[mailbot] {rendered.subject}",
                                       detail={"mailbox": row.mailbox, "down": down}, client_mail=False),
                        now, self.ctx.limits)
            session.commit()

    # --- the whole ----------------------------------------------------------------------------

    def _ended(self, task: asyncio.Task) -> None:
        """A task that ends before the stop is a bug: say so loudly (the watchdog reports the
        silent folder to staff)."""
        if task.cancelled() or self.stop.is_set():
            return
        exc = task.exception()
        log.error("task ended", extra={"task": task.get_name(), "reason": repr(exc)[:300]},
                  exc_info=(type(exc), exc, exc.__traceback__) if exc else None)

    def _history(self) -> None:
        """Record the first start (once per database) and what is history from it on."""
        first, is_first = first_start(self.engine, self.clock())
        self.ctx.history_before = cutoff(first, self.settings)
        if is_first:
            log.info("first start", extra={"history_before": self.ctx.history_before.isoformat(),
                                           "reason": "mail that came before is filed without answers"})

    async def serve(self) -> int:
        loop = self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop.set)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread (tests): the caller sets `stop`
        if self.history:
            await self.run_db(self._history)
        self.readers.start()  # it boots on the other core while the jobs catch up: warm for the first mail
        scheduler = None
        if self.with_scheduler:
            scheduler = self.scheduler()
            scheduler.start()
            await self.catch_up()
        tasks = [asyncio.create_task(w.run(), name=f"watch-{w.mailbox}-{w.folder}") for w in self.watchers()]
        tasks.append(asyncio.create_task(self.sender.run(), name="outbox"))
        tasks.append(asyncio.create_task(self.watchdog(), name="watchdog"))
        web = {}
        if self.site is not None:
            from mailbot.web.server import address, serve as serve_site

            tasks.append(asyncio.create_task(serve_site(self.settings, self.engine, self.site, self.stop,
                                                        clock=self.clock, nudge=self.nudge), name="web"))
            web["web"] = address(self.site)
        for task in tasks:
            task.add_done_callback(self._ended)
        log.info("started", extra={"watchers": len(self._watchers), **web})
        await self.stop.wait()
        log.info("stopping")
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sent_folder.close()  # the sender closes it too, unless it died
        self.db.shutdown(wait=True)
        self.readers.close()
        self.engine.dispose()
        if self.site is not None:
            self.site.close()
        log.info("stopped", extra={"processed": self.processed})
        return 0
