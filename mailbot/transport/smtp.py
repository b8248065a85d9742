"""Send the outbox with aiosmtplib: in order, retried with backoff, each mail marked sent once.

A mail is marked "sending" (committed) before the SMTP transaction, and "handed" between the
message's last line and the final dot of DATA: the server cannot take a mail before its dot, and
may from then on. After a crash, a mail still "sending" never reached the server and is sent
again (unless its Message-ID is in the sent folder); a mail "handed" counts as sent -- its copy
is added to the sent folder if missing -- since sending it twice is what must never happen.
Exactly once is impossible over SMTP (RFC 1047): what is left is the instant between the
"handed" commit and the dot, where a crash loses the mail instead of duplicating it. That instant
is kept to microseconds: the commit runs on the event loop, with the database thread held idle,
and the dot follows it directly (a commit in the database thread would be followed by a thread
switch of 0.1 to several ms before the dot).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.typing import Default, SMTPStatus
from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from mailbot.config import Daemon, Smtp
from mailbot.store.models import OutboxMail
from mailbot.transport.compose import compose

log = logging.getLogger("mailbot.smtp")

SentCheck = Callable[[str], Awaitable[bool | None]]  # True found, False not found, None unknown
SentCopy = Callable[[bytes], Awaitable[None]]


def smtp_options(cfg: Smtp, password: str | None) -> dict:
    options: dict = {"hostname": cfg.host, "port": cfg.port, "timeout": 30}
    if cfg.security == "tls":
        options.update(use_tls=True, tls_context=ssl.create_default_context())
    elif cfg.security == "starttls":
        # start_tls=True: fail if the server does not offer STARTTLS (never "upgrade if offered").
        options.update(start_tls=True, tls_context=ssl.create_default_context())
    else:
        options.update(use_tls=False, start_tls=False)
    if cfg.user:
        options.update(username=cfg.user, password=password)
    return options


class _HandingSMTP(aiosmtplib.SMTP):
    """aiosmtplib's SMTP whose DATA, after the message's last line, leaves the final dot to
    `hand_over(write_dot)`, called within `quiet()` (aiosmtplib writes both at once): until the
    dot the server cannot take the mail, from then on it may."""

    def __init__(self, quiet: Callable[[], AbstractAsyncContextManager[None]],
                 hand_over: Callable[[Callable[[], None]], None], **options) -> None:
        super().__init__(**options)
        self.quiet, self.hand_over = quiet, hand_over

    async def data(self, message: str | bytes, /, *, timeout=Default.token) -> aiosmtplib.SMTPResponse:
        timeout = self.timeout if timeout is Default.token else timeout
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA", timeout=timeout)
        if start.code != SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        protocol = self.protocol
        try:
            protocol.write(PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)))
            async with self.quiet():
                self.hand_over(lambda: protocol.write(b".\r\n"))
            response = await protocol.read_response(timeout=timeout)
        except BaseException:
            self.close()  # without its dot the server drops the message
            raise
        if response.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
        return response


@dataclass
class OutboxSender:
    engine: object
    run_db: Callable
    cfg: Smtp
    password: str | None
    daemon: Daemon
    clock: Callable[[], dt.datetime]
    stop: asyncio.Event
    sent_check: SentCheck | None = None  # looks a Message-ID up in the sent folder
    sent_copy: SentCopy | None = None  # appends what was sent to the sent folder
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        recovered = False
        while not self.stop.is_set():
            try:
                if not recovered:  # at start, and after the database failed in the middle of a send
                    await self.recover()
                    recovered = True
                row = await self.run_db(self._next)
                if row is None:
                    self.wake.clear()
                    waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop.wait())]
                    await asyncio.wait(waiters, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
                    for w in waiters:
                        w.cancel()
                    continue
                await self.send(row)
            except SQLAlchemyError as exc:  # locked or full: wait, then settle what was in hand
                recovered = False
                log.warning("database error", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=min(5.0, self.daemon.send_retry_max_seconds))

    async def recover(self) -> None:
        """Mails caught mid-send by a crash: "sending" ones never reached the server and are sent
        again (unless the sent folder has them); "handed" ones count as sent."""
        for row in await self.run_db(self._in_state, "sending"):
            found = await self.sent_check(row.message_id) if self.sent_check else None
            if found:
                await self.run_db(self._mark, row.id, "sent", "found in the sent folder after a restart")
            else:
                why = "not in the sent folder after a restart" if found is False else "sent folder not checked"
                await self.run_db(self._mark, row.id, "pending", why)
        for row in await self.run_db(self._in_state, "handed"):
            found = await self.sent_check(row.message_id) if self.sent_check else None
            if found is False and self.cfg.saves_to_sent:
                # The server keeps a copy of every mail it takes: this one it did not take.
                await self.run_db(self._mark, row.id, "pending", "handed over, but not in the sent folder")
                continue
            if found is False and self.sent_copy:
                try:
                    await self.sent_copy(compose(row).as_bytes())
                except Exception as exc:  # noqa: BLE001 - the copy is for people; the mail went
                    log.warning("sent copy failed", extra={"message_id": row.message_id, "reason": str(exc)[:200]})
            await self.run_db(self._mark, row.id, "sent", "handed to the server before a restart: counted as sent")

    async def send(self, row: OutboxMail) -> None:
        await self.run_db(self._mark, row.id, "sending", "")
        message = compose(row)
        try:
            async with _HandingSMTP(self._database_held, functools.partial(self._hand_over, row.id),
                                    **smtp_options(self.cfg, self.password)) as smtp:
                await smtp.send_message(message)
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            await self._failed(row, f"{exc.code} {exc.message}"[:300], permanent)
            return
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._failed(row, f"{type(exc).__name__}: {str(exc)[:200]}", permanent=False)
            return
        if self.sent_copy and not self.cfg.saves_to_sent:
            # The copy first: after a crash here the mail is still "handed", and recovery finds
            # its copy rather than adding a second one.
            try:
                await self.sent_copy(message.as_bytes())
            except Exception as exc:  # noqa: BLE001 - the mail did go; only the copy is missing
                log.warning("sent copy failed", extra={"message_id": row.message_id, "reason": str(exc)[:200]})
        await self.run_db(self._mark, row.id, "sent", "")
        log.info("sent", extra={"purpose": row.purpose, "message_id": row.message_id})

    async def _failed(self, row: OutboxMail, reason: str, permanent: bool) -> None:
        attempts = row.attempts + 1
        if permanent:
            await self.run_db(self._mark, row.id, "failed", reason, attempts)
            log.warning("refused", extra={"purpose": row.purpose, "message_id": row.message_id, "reason": reason})
            return
        delay = min(2 ** attempts, self.daemon.send_retry_max_seconds)
        await self.run_db(self._mark, row.id, "pending", reason, attempts, self.clock() + dt.timedelta(seconds=delay))
        log.info("retry later", extra={"message_id": row.message_id, "reason": reason, "in_seconds": delay})

    @contextlib.asynccontextmanager
    async def _database_held(self) -> AsyncIterator[None]:
        """Hold the database thread idle -- no transaction open, no Python running -- so that the
        event loop can commit and go on at once, with no lock to wait for and no thread switch."""
        loop = asyncio.get_running_loop()
        idle, release = loop.create_future(), threading.Event()

        def hold() -> None:
            loop.call_soon_threadsafe(lambda: idle.done() or idle.set_result(None))
            release.wait(60)

        held = asyncio.ensure_future(self.run_db(hold))
        try:
            await asyncio.wait((idle, held), return_when=asyncio.FIRST_COMPLETED)
            if not idle.done():
                held.result()  # the database thread could not take it: its error
                raise RuntimeError("the database thread did not hold")
            yield
        finally:
            release.set()

    def _hand_over(self, row_id: int, write_dot: Callable[[], None]) -> None:
        """Commit "handed", then write the final dot at once (on the event loop, the database
        thread held): nothing but the end of the commit call comes between the two -- not even
        SQLite's automatic checkpoint (milliseconds of fsync), left to the next commit."""
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                pages = int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar())
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            try:
                connection.execute(update(OutboxMail).where(OutboxMail.id == row_id)
                                   .values(state="handed", last_error="", not_before=None))
                connection.commit()
                write_dot()
            finally:
                if sqlite:
                    connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}")

    # --- database side (run in the daemon's database thread) ---------------------------------

    def _next(self) -> OutboxMail | None:
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            return session.exec(select(OutboxMail).where(OutboxMail.state == "pending",
                                                         or_(col(OutboxMail.not_before).is_(None),
                                                             OutboxMail.not_before <= now))
                                .order_by(OutboxMail.id)).first()

    def _in_state(self, state: str) -> list[OutboxMail]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.exec(select(OutboxMail).where(OutboxMail.state == state).order_by(OutboxMail.id)))

    def _mark(self, row_id: int, state: str, error: str, attempts: int | None = None,
              not_before: dt.datetime | None = None) -> None:
        with Session(self.engine) as session:
            row = session.get(OutboxMail, row_id)
            row.state, row.last_error, row.not_before = state, error, not_before
            if attempts is not None:
                row.attempts = attempts
            if state == "sent":
                row.sent_at = self.clock()
            session.add(row)
            session.commit()
