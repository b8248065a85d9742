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

One SMTP connection carries mail after mail while there is mail to send (a TLS handshake and a
login each cost more than the mail), and is closed after `smtp_idle_seconds` without one, or on
any error. A kept connection found dead before the dot of a mail (the server dropped it while
idle) is replaced at once for that mail: the server cannot have it. A copy the sent folder did
not take is owed (`copy_owed`) and tried again when there is nothing to send, after a look
whether the failed try landed after all: never two copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
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
from mailbot.errors import SignInError
from mailbot.store.models import OutboxMail
from mailbot.transport.compose import compose
from mailbot.transport.oauth import Credential, smtp_login

log = logging.getLogger("mailbot.smtp")

SentCheck = Callable[[str], Awaitable[bool | None]]  # True found, False not found, None unknown
SentCopy = Callable[..., Awaitable[None]]  # (message_id, raw, look_first=False); raises when not added
SentClose = Callable[[], Awaitable[None]]
DOT_TIMEOUT_SECONDS = 600


def smtp_options(cfg: Smtp) -> dict:
    """How to connect; the login is smtp_login's, after the connection is made."""
    options: dict = {"hostname": cfg.host, "port": cfg.port, "timeout": 30}
    if cfg.security == "tls":
        options.update(use_tls=True, tls_context=ssl.create_default_context())
    elif cfg.security == "starttls":
        # start_tls=True: fail if the server does not offer STARTTLS (never "upgrade if offered").
        options.update(start_tls=True, tls_context=ssl.create_default_context())
    else:
        options.update(use_tls=False, start_tls=False)
    return options


class _HandingSMTP(aiosmtplib.SMTP):
    """aiosmtplib's SMTP whose DATA, after the message's last line, leaves the final dot to
    `hand_over(write_dot)`, called within `quiet()` (aiosmtplib writes both at once): until the
    dot the server cannot take the mail, from then on it may. On a kept connection `hand_over`
    is set anew for each mail."""

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
            # RFC 5321 4.5.3.2.6: the server has 10 minutes to answer the dot; giving up sooner
            # would count as sent a mail it is still deciding on.
            response = await protocol.read_response(timeout=max(timeout or 0, DOT_TIMEOUT_SECONDS))
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
    password: Credential | None  # None: no AUTH
    daemon: Daemon
    clock: Callable[[], dt.datetime]
    stop: asyncio.Event
    sent_check: SentCheck | None = None  # looks a Message-ID up in the sent folder
    sent_copy: SentCopy | None = None  # appends what was sent to the sent folder
    sent_close: SentClose | None = None  # closes the sent folder's connection (idle, or stopping)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _smtp: _HandingSMTP | None = field(default=None, init=False, repr=False)
    _idle_since: float = field(default=0.0, init=False, repr=False)  # loop time of the last send
    _copies_due: float = field(default=0.0, init=False, repr=False)  # loop time; inf: none owed
    _copy_tries: int = field(default=0, init=False, repr=False)

    async def run(self) -> None:
        recovered = False
        try:
            while not self.stop.is_set():
                try:
                    if not recovered:  # at start, and after the database failed in the middle of a send
                        await self.recover()
                        recovered = True
                    self.wake.clear()  # before the look: news from now on ends the wait below
                    row = await self.run_db(self._claim)
                    if row is not None:
                        await self.send(row)
                    elif not await self.copy_owed():
                        await self._wait()
                except SQLAlchemyError as exc:  # locked or full: wait, then settle what was in hand
                    recovered = False
                    await self._close()
                    log.warning("database error", extra={"reason": f"{type(exc).__name__}: {str(exc)[:200]}"})
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), timeout=min(5.0, self.daemon.send_retry_max_seconds))
        finally:
            await self._close()

    async def _wait(self) -> None:
        """Nothing to send: wait for news (or 2 s); the connections close once idle long enough."""
        now = asyncio.get_running_loop().time()
        timeout = min(2.0, max(0.0, self._copies_due - now))
        if self._smtp is not None or self._idle_since:
            left = self._idle_since + self.daemon.smtp_idle_seconds - now
            if left <= 0:
                await self._close()
            else:
                timeout = min(timeout, left)
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop.wait())]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    async def _connection(self) -> _HandingSMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        smtp = _HandingSMTP(self._database_held, self._no_hand_over, **smtp_options(self.cfg))
        await smtp.connect()  # closes itself when it fails
        try:
            await smtp_login(smtp, self.cfg.user, self.password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def _close(self) -> None:
        """QUIT the SMTP connection and close the sent folder's."""
        smtp, self._smtp = self._smtp, None
        self._idle_since = 0.0
        if smtp is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(smtp.quit(), timeout=5)
            smtp.close()
        if self.sent_close is not None:
            with contextlib.suppress(Exception):  # a dead connection cannot log out
                await self.sent_close()

    @staticmethod
    def _no_hand_over(write_dot: Callable[[], None]) -> None:
        raise RuntimeError("DATA outside send()")  # send() sets the mail's own hand-over

    async def copy_owed(self) -> bool:
        """When there is nothing to send: the sent copies still owed, each looked up first.
        True when it did some (the sender looks for mail again before the next ones)."""
        loop = asyncio.get_running_loop()
        if self.sent_copy is None or loop.time() < self._copies_due:
            return False
        rows = await self.run_db(self._owing)
        if not rows:
            self._copies_due, self._copy_tries = math.inf, 0  # until a copy fails again
            return False
        failed = 0
        for row in rows:
            try:
                await self.sent_copy(row.message_id, compose(row).as_bytes(), look_first=True)
            except Exception as exc:  # noqa: BLE001 - tried again later, with backoff
                failed += 1
                log.info("sent copy still failing", extra={"message_id": row.message_id, "reason": str(exc)[:200]})
                if isinstance(exc, OSError) or failed >= 3:
                    break  # the server is away: the next round, not the next copy
                continue  # this copy refused (too large, quota): the others need not wait behind it
            await self.run_db(self._copied, row.id)
            self._idle_since = loop.time()  # the sent folder's connection is closed when idle
            log.info("sent copy added late", extra={"message_id": row.message_id})
            if self.wake.is_set() or self.stop.is_set():
                break  # mail to send comes first
        if failed:
            self._copy_tries += 1
            self._copies_due = loop.time() + min(2 ** self._copy_tries, self.daemon.send_retry_max_seconds)
        else:
            self._copy_tries = 0
        return True

    def _copy_failed(self, row: OutboxMail, exc: Exception) -> None:
        log.warning("sent copy failed", extra={"message_id": row.message_id, "reason": str(exc)[:200]})
        due = asyncio.get_running_loop().time() + min(2 ** (self._copy_tries + 1), self.daemon.send_retry_max_seconds)
        self._copies_due = min(self._copies_due, due)

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
            owed = found is None and self.sent_copy is not None and not self.cfg.saves_to_sent  # looked up later
            if found is False and self.sent_copy:
                try:
                    await self.sent_copy(row.message_id, compose(row).as_bytes())
                except Exception as exc:  # noqa: BLE001 - the copy is for people; the mail went
                    self._copy_failed(row, exc)
                    owed = True
            await self.run_db(self._mark, row.id, "sent", "handed to the server before a restart: counted as sent",
                              copy_owed=owed)
        self._idle_since = asyncio.get_running_loop().time()  # the sent folder's connection, if opened

    async def send(self, row: OutboxMail) -> None:
        """Send one mail, claimed ("sending") by `_claim`."""
        message = compose(row)
        try:
            for _ in range(2):
                reused, handed = self._smtp is not None and self._smtp.is_connected, False

                def hand_over(write_dot: Callable[[], None]) -> None:
                    nonlocal handed
                    self._hand_over(row.id, write_dot)
                    handed = True  # only once the dot is written: before it the server cannot have the mail

                try:
                    smtp = await self._connection()
                    smtp.hand_over = hand_over
                    try:
                        await smtp.send_message(message)
                    finally:
                        smtp.hand_over = self._no_hand_over
                    break
                except aiosmtplib.SMTPResponseException as exc:
                    self._drop()
                    if reused and not handed and exc.code == 421:
                        continue  # the server ends this connection (too many mails on it, idle)
                    # A refused login is the credentials' fault, not the mail's: it waits for them.
                    permanent = 500 <= exc.code < 600 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                    await self._failed(row, f"{exc.code} {exc.message}"[:300], permanent=permanent)
                    return
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError, SignInError) as exc:
                    self._drop()
                    if reused and not handed and isinstance(exc, (OSError, asyncio.TimeoutError)):
                        continue  # a kept connection gone dead: before the dot, the server cannot have the mail
                    if handed:
                        # No answer to the dot: the server may have the mail, and twice is what
                        # must never happen. Counted as sent; its copy is looked up, then added.
                        owed = self.sent_copy is not None and not self.cfg.saves_to_sent
                        await self.run_db(self._mark, row.id, "sent", f"no answer after the final dot: counted as sent "
                                          f"({type(exc).__name__})", copy_owed=owed)
                        if owed:
                            self._copy_failed(row, exc)
                        return
                    await self._failed(row, f"{type(exc).__name__}: {str(exc)[:200]}", permanent=False)
                    return
        finally:
            self._idle_since = asyncio.get_running_loop().time()
        owed = False
        if self.sent_copy and not self.cfg.saves_to_sent:
            # The copy first: after a crash here the mail is still "handed", and recovery finds
            # its copy rather than adding a second one.
            try:
                await self.sent_copy(row.message_id, message.as_bytes())
            except Exception as exc:  # noqa: BLE001 - the mail did go; only the copy is missing, owed
                self._copy_failed(row, exc)
                owed = True
        await self.run_db(self._mark, row.id, "sent", "", copy_owed=owed)
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

    def _claim(self) -> OutboxMail | None:
        """The next mail due, marked "sending" -- in one call: during a backlog each call waits
        behind a mail of the pipeline on the database thread."""
        now = self.clock()
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(select(OutboxMail).where(OutboxMail.state == "pending",
                                                        or_(col(OutboxMail.not_before).is_(None),
                                                            OutboxMail.not_before <= now))
                               .order_by(OutboxMail.id).limit(1)).first()  # LIMIT: .first() alone loads every row
            if row is not None:
                row.state, row.last_error, row.not_before = "sending", "", None
                session.add(row)
                session.commit()
            return row

    def _owing(self) -> list[OutboxMail]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.exec(select(OutboxMail).where(OutboxMail.copy_owed == True)
                                     .order_by(OutboxMail.id).limit(20)))

    def _copied(self, row_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(OutboxMail).where(OutboxMail.id == row_id).values(copy_owed=False))

    def _in_state(self, state: str) -> list[OutboxMail]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.exec(select(OutboxMail).where(OutboxMail.state == state).order_by(OutboxMail.id)))

    def _mark(self, row_id: int, state: str, error: str, attempts: int | None = None,
              not_before: dt.datetime | None = None, copy_owed: bool = False) -> None:
        with Session(self.engine) as session:
            row = session.get(OutboxMail, row_id)
            row.state, row.last_error, row.not_before, row.copy_owed = state, error, not_before, copy_owed
            if attempts is not None:
                row.attempts = attempts
            if state == "sent":
                row.sent_at = self.clock()
            session.add(row)
            session.commit()
