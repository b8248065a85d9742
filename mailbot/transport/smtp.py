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
whether the failed try landed after all: never two copies. The sent folder is injected (a
SentFolder: on IMAP, or none); the mail's moves are the outbox's (mailbot/outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import aiosmtplib
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mailbot.config import Daemon, Smtp
from mailbot.errors import (
    ConnectionLost,
    SignInError,
    SmtpConnectionLost,
    SmtpError,
    SmtpLoginFailed,
    SmtpPermanent,
    SmtpTemporary,
    TransportError,
)
from mailbot.outbox import OutboxState, claim, copy_added, in_state, mark_handed, move, owing_copies
from mailbot.shims.aiosmtplib_data import HandingSMTP
from mailbot.store.models import OutboxMail
from mailbot.transport.compose import compose
from mailbot.transport.oauth import Credential, smtp_login
from mailbot.transport.sent import Filing, NullSentFolder, SentFolder

log = logging.getLogger("mailbot.smtp")


def smtp_options(cfg: Smtp) -> dict:
    """How to connect; the login is `login`'s, once the connection is made."""
    options: dict = {"hostname": cfg.host, "port": cfg.port, "timeout": 30}
    if cfg.security == "tls":
        options.update(use_tls=True, tls_context=ssl.create_default_context())
    elif cfg.security == "starttls":
        # start_tls=True: fail if the server does not offer STARTTLS (never "upgrade if offered").
        options.update(start_tls=True, tls_context=ssl.create_default_context())
    else:
        options.update(use_tls=False, start_tls=False)
    return options


async def login(smtp: aiosmtplib.SMTP, cfg: Smtp, password: Credential | None) -> None:
    """Log in on a connected session with a password or an OAuth2 token (nothing to do without
    a user); a token that cannot be had is a SignInError."""
    await smtp_login(smtp, cfg.user, password)


# The step a refusal names, by aiosmtplib's exception.
_STEPS = ((aiosmtplib.SMTPAuthenticationError, "login"), (aiosmtplib.SMTPHeloError, "EHLO"),
          (aiosmtplib.SMTPSenderRefused, "MAIL FROM"), (aiosmtplib.SMTPRecipientRefused, "RCPT TO"),
          (aiosmtplib.SMTPRecipientsRefused, "RCPT TO"), (aiosmtplib.SMTPDataError, "DATA"),
          (aiosmtplib.SMTPConnectError, "connect"))


def smtp_error(exc: BaseException, cfg: Smtp, step: str) -> SmtpError:
    """The narrow error for what aiosmtplib or the socket raised, naming the host and the step."""
    host = cfg.host
    step = next((name for kind, name in _STEPS if isinstance(exc, kind)), step)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # The credentials' fault, not the mail's: the mail waits for them to be mended.
        return SmtpLoginFailed(f"login refused by {host}: {exc.code} {exc.message}", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        kind = SmtpPermanent if 500 <= exc.code < 600 else SmtpTemporary
        return kind(f"{exc.code} {exc.message} ({host}, {step})", exc.code)
    if not isinstance(exc, OSError):  # e.g. every recipient refused, an extension missing
        return SmtpTemporary(f"{host} refused {step}: {type(exc).__name__}: {exc}")
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) and exc.__cause__ else exc
    if isinstance(cause, socket.gaierror):
        return SmtpConnectionLost(f"cannot resolve {host}: {cause.strerror}")
    if isinstance(cause, ConnectionRefusedError):
        return SmtpConnectionLost(f"connection refused by {host}:{cfg.port}")
    if isinstance(cause, ssl.SSLCertVerificationError):
        return SmtpConnectionLost(f"certificate of {host} not trusted: {cause.verify_message}")
    if isinstance(cause, TimeoutError):
        return SmtpConnectionLost(f"no answer from {host} ({step})")
    return SmtpConnectionLost(f"connection to {host} lost ({step}): {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translated(cfg: Smtp, step: str) -> Iterator[None]:
    """aiosmtplib's and the socket's errors within, as SmtpError."""
    try:
        yield
    except (aiosmtplib.SMTPException, OSError) as exc:  # OSError: TimeoutError too
        raise smtp_error(exc, cfg, step) from exc


@dataclass
class OutboxSender:
    engine: Engine
    run_db: Callable
    cfg: Smtp
    password: Credential | None  # None: no AUTH
    daemon: Daemon
    clock: Callable[[], dt.datetime]
    stop: asyncio.Event
    sent: SentFolder = field(default_factory=NullSentFolder)  # looked up after a crash; copies added
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _smtp: HandingSMTP | None = field(default=None, init=False, repr=False)
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
                    row = await self.run_db(claim, self.engine, self.clock())
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

    async def _connection(self) -> HandingSMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        smtp = HandingSMTP(self._database_held, self._no_hand_over, **smtp_options(self.cfg))
        with translated(self.cfg, "connect"):
            await smtp.connect()  # closes itself when it fails
        try:
            with translated(self.cfg, "login"):
                await login(smtp, self.cfg, self.password)
        except SmtpError:
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
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):  # OSError: TimeoutError too
                await asyncio.wait_for(smtp.quit(), timeout=5)
            smtp.close()
        with contextlib.suppress(TransportError):  # a dead connection cannot log out
            await self.sent.close()

    @staticmethod
    def _no_hand_over(write_dot: Callable[[], None]) -> None:
        raise RuntimeError("DATA outside send()")  # send() sets the mail's own hand-over

    async def _move(self, row_id: int, target: OutboxState, error: str, **changes) -> None:
        await self.run_db(move, self.engine, row_id, target, error, self.clock(), **changes)

    async def copy_owed(self) -> bool:
        """When there is nothing to send: the sent copies still owed, each looked up first.
        True when it did some (the sender looks for mail again before the next ones)."""
        loop = asyncio.get_running_loop()
        if self.sent.filing is Filing.NOBODY or loop.time() < self._copies_due:
            return False
        rows = await self.run_db(owing_copies, self.engine)
        if not rows:
            self._copies_due, self._copy_tries = math.inf, 0  # until a copy fails again
            return False
        failed = 0
        for row in rows:
            try:
                await self.sent.add(row.message_id, compose(row).as_bytes(), look_first=True)
            except TransportError as exc:  # tried again later, with backoff
                failed += 1
                log.info("sent copy still failing", extra={"message_id": row.message_id, "reason": str(exc)[:200]})
                if isinstance(exc, ConnectionLost) or failed >= 3:
                    break  # the server is away: the next round, not the next copy
                continue  # this copy refused (too large, quota): the others need not wait behind it
            await self.run_db(copy_added, self.engine, row.id)
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
        """Mails caught mid-send by a crash: SENDING ones never reached the server and are sent
        again (unless the sent folder has them); HANDED ones count as sent."""
        for row in await self.run_db(in_state, self.engine, OutboxState.SENDING):
            found = await self.sent.find(row.message_id)
            if found:
                await self._move(row.id, OutboxState.SENT, "found in the sent folder after a restart")
            else:
                why = "not in the sent folder after a restart" if found is False else "sent folder not checked"
                await self._move(row.id, OutboxState.PENDING, why)
        for row in await self.run_db(in_state, self.engine, OutboxState.HANDED):
            found = await self.sent.find(row.message_id)
            if found is False and self.sent.filing is Filing.SERVER:
                # The server keeps a copy of every mail it takes: this one it did not take.
                await self._move(row.id, OutboxState.PENDING, "handed over, but not in the sent folder")
                continue
            owed = found is None and self.sent.filing is Filing.BOT  # looked up later
            if found is False and self.sent.filing is Filing.BOT:
                try:
                    await self.sent.add(row.message_id, compose(row).as_bytes())
                except TransportError as exc:  # the copy is for people; the mail went
                    self._copy_failed(row, exc)
                    owed = True
            await self._move(row.id, OutboxState.SENT, "handed to the server before a restart: counted as sent",
                             copy_owed=owed)
        self._idle_since = asyncio.get_running_loop().time()  # the sent folder's connection, if opened

    async def send(self, row: OutboxMail) -> None:
        """Send one mail, claimed (SENDING) by `claim`."""
        assert row.id is not None  # read back from the outbox
        message = compose(row)
        try:
            for _ in range(2):
                reused, handed = self._smtp is not None and self._smtp.is_connected, False

                def hand_over(write_dot: Callable[[], None]) -> None:
                    nonlocal handed
                    assert row.id is not None  # read back from the outbox
                    self._hand_over(row.id, write_dot)
                    handed = True  # only once the dot is written: before it the server cannot have the mail

                try:
                    smtp = await self._connection()
                    smtp.hand_over = hand_over
                    try:
                        await smtp.send_message(message)
                    except (aiosmtplib.SMTPException, OSError) as exc:  # OSError: TimeoutError too
                        step = "the reply to the final dot" if handed else "sending"
                        raise smtp_error(exc, self.cfg, step) from exc
                    finally:
                        smtp.hand_over = self._no_hand_over
                    break
                except (SmtpError, SignInError) as exc:
                    self._drop()
                    # 421: the server ends this connection (too many mails on it, idle); a kept
                    # connection gone dead: before the dot, the server cannot have the mail.
                    code = getattr(exc, "code", None)
                    again = code == 421 if code is not None else isinstance(exc, SmtpConnectionLost)
                    if reused and not handed and again:
                        continue
                    if handed and code is None:
                        # No answer to the dot: the server may have the mail, and twice is what
                        # must never happen. Counted as sent; its copy is looked up, then added.
                        owed = self.sent.filing is Filing.BOT
                        await self._move(row.id, OutboxState.SENT, f"no answer after the final dot: counted as sent "
                                         f"({type(exc.__cause__).__name__})", copy_owed=owed)
                        if owed:
                            self._copy_failed(row, exc)
                        return
                    await self._failed(row, str(exc)[:300], permanent=isinstance(exc, SmtpPermanent))
                    return
        finally:
            self._idle_since = asyncio.get_running_loop().time()
        owed = False
        if self.sent.filing is Filing.BOT:
            # The copy first: after a crash here the mail is still HANDED, and recovery finds
            # its copy rather than adding a second one.
            try:
                await self.sent.add(row.message_id, message.as_bytes())
            except TransportError as exc:  # the mail did go; only the copy is missing, owed
                self._copy_failed(row, exc)
                owed = True
        await self._move(row.id, OutboxState.SENT, "", copy_owed=owed)
        log.info("sent", extra={"purpose": row.purpose, "message_id": row.message_id})

    async def _failed(self, row: OutboxMail, reason: str, permanent: bool) -> None:
        assert row.id is not None  # read back from the outbox
        attempts = row.attempts + 1
        if permanent:
            await self._move(row.id, OutboxState.FAILED, reason, attempts=attempts)
            log.warning("refused", extra={"purpose": row.purpose, "message_id": row.message_id, "reason": reason})
            return
        delay = min(2 ** attempts, self.daemon.send_retry_max_seconds)
        await self._move(row.id, OutboxState.PENDING, reason, attempts=attempts,
                         not_before=self.clock() + dt.timedelta(seconds=delay))
        log.info("retry later", extra={"message_id": row.message_id, "reason": reason, "in_seconds": delay})

    @contextlib.asynccontextmanager
    async def _database_held(self) -> AsyncIterator[None]:
        """Hold the database thread idle -- no transaction open, no Python running -- so that the
        event loop can commit and go on at once, with no lock to wait for and no thread switch."""
        loop = asyncio.get_running_loop()
        idle, release = loop.create_future(), threading.Event()

        def set_idle() -> None:
            if not idle.done():
                idle.set_result(None)

        def hold() -> None:
            loop.call_soon_threadsafe(set_idle)
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
        """Commit HANDED, then write the final dot at once (on the event loop, the database
        thread held): nothing but the end of the commit call comes between the two -- not even
        SQLite's automatic checkpoint (milliseconds of fsync), left to the next commit."""
        with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                pages = int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())
                connection.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            try:
                mark_handed(connection, row_id)
                connection.commit()
                write_dot()
            finally:
                if sqlite:
                    connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={pages}")
