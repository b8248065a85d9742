"""Send the outbox with aiosmtplib: in order, retried with backoff, each mail marked sent once.

A mail is marked "sending" (committed) before it is handed to the server. After a crash, a mail
still "sending" is uncertain: its Message-ID is looked for in the sent folder, and it is sent
again only when it is not there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiosmtplib
from sqlalchemy import or_
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
        await self.recover()
        while not self.stop.is_set():
            row = await self.run_db(self._next)
            if row is None:
                self.wake.clear()
                waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(self.stop.wait())]
                await asyncio.wait(waiters, timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                continue
            await self.send(row)

    async def recover(self) -> None:
        """Mails caught mid-send by a crash: sent if the sent folder has them, else sent again."""
        for row in await self.run_db(self._in_state, "sending"):
            found = await self.sent_check(row.message_id) if self.sent_check else None
            if found:
                await self.run_db(self._mark, row.id, "sent", "found in the sent folder after a restart")
            else:
                why = "not in the sent folder after a restart" if found is False else "sent folder not checked"
                await self.run_db(self._mark, row.id, "pending", why)

    async def send(self, row: OutboxMail) -> None:
        await self.run_db(self._mark, row.id, "sending", "")
        message = compose(row)
        try:
            await aiosmtplib.send(message, **smtp_options(self.cfg, self.password))
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            await self._failed(row, f"{exc.code} {exc.message}"[:300], permanent)
            return
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._failed(row, f"{type(exc).__name__}: {str(exc)[:200]}", permanent=False)
            return
        if self.sent_copy and not self.cfg.saves_to_sent:
            # The copy first: after a crash here, the sent folder is what says the mail went.
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
