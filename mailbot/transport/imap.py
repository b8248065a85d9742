"""Watch one IMAP folder: catch up by UID, then IDLE (or poll), and hand each new mail over.

imapclient is synchronous, so each folder has its own connection used from a worker thread;
the watcher itself is an asyncio task. Processed mail is never deleted and \\Seen is never
touched (people read these inboxes): the bot sets its own keyword, or moves the mail, only
after the database has committed what it learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from mailbot.config import Daemon, Imap
from mailbot.errors import StoreError
from mailbot.seen import Seen
from mailbot.store.models import FolderState

log = logging.getLogger("mailbot.imap")
# What a broken or vanished connection raises: reconnect and catch up.
CONNECTION_ERRORS = (IMAPClientError, OSError, ssl.SSLError, EOFError, socket.timeout, ValueError)
T = TypeVar("T")


class ImapFolder:
    """One synchronous connection to one folder."""

    def __init__(self, cfg: Imap, password: str, folder: str, timeout: float = 30.0) -> None:
        self.cfg, self.password, self.folder, self.timeout = cfg, password, folder, timeout
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.can_keyword = False
        self.has_idle = False

    def connect(self) -> int:
        cfg = self.cfg
        context = ssl.create_default_context()  # certificates verified
        if cfg.security == "tls":
            client = IMAPClient(cfg.host, port=cfg.port, ssl=True, ssl_context=context, timeout=self.timeout)
        else:
            client = IMAPClient(cfg.host, port=cfg.port, ssl=False, timeout=self.timeout)
            if cfg.security == "starttls":
                client.starttls(context)  # fails when not offered: never "upgrade if offered"
        sock = client.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.login(cfg.user, self.password)
        if not client.folder_exists(self.folder):
            client.create_folder(self.folder)
        selected = client.select_folder(self.folder)
        self.client = client
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        self.can_keyword = b"\\*" in selected.get(b"PERMANENTFLAGS", ())
        self.has_idle = client.has_capability("IDLE")
        return self.uidvalidity

    def uids_after(self, last_uid: int) -> list[int]:
        self.announced()  # from this search on, what the server announces is news to wait()
        # "UID n:*" also returns the last message when its UID is below n: filter here.
        return sorted(u for u in self.client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)

    def announced(self) -> bool:
        """True when the server announced new mail (EXISTS) since the last call, in its answer
        to another command -- a FETCH or STORE while mail was being taken: imapclient keeps such
        announcements without a word, and IDLE would not repeat them."""
        _, data = self.client._imap.response("EXISTS")
        return data != [None]

    def buffered(self) -> bool:
        """True when lines from the server already wait in imaplib's buffer, where idle_check()
        -- which polls the socket -- never looks: Dovecot announces what came since the last
        command right after "+ idling", often in the same read."""
        sock = self.client.socket()
        timeout = sock.gettimeout()
        sock.settimeout(0)  # look, never wait
        try:
            return bool(self.client._imap.file.peek(1))
        except OSError:
            return False
        finally:
            sock.settimeout(timeout)

    def uids_not_done(self) -> list[int]:
        """After a UIDVALIDITY change: every message the bot has not flagged."""
        if self.can_keyword:
            return sorted(self.client.search(["UNKEYWORD", self.cfg.keyword]))
        return sorted(self.client.search(["ALL"]))

    def batches(self, uids: list[int]) -> list[list[int]]:
        """`uids` in batches of at most BATCH_MAILS mails and BATCH_BYTES bytes (one mail alone
        when it is larger), so that a backlog is never in memory at once."""
        sizes = self.client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        out: list[list[int]] = []
        total = 0
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if not out or len(out[-1]) >= BATCH_MAILS or total + size > BATCH_BYTES:
                out.append([])
                total = 0
            out[-1].append(uid)
            total += size
        return out

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The mails of `uids` still there, in one FETCH (BODY.PEEK leaves \\Seen alone)."""
        data = self.client.fetch(uids, ["BODY.PEEK[]"])
        return {uid: data[uid][b"BODY[]"] for uid in uids if b"BODY[]" in data.get(uid, {})}

    def mark_done(self, uids: list[int]) -> None:
        if self.can_keyword:
            self.client.add_flags(uids, [self.cfg.keyword.encode()])
        elif self.cfg.move_to:
            if not self.client.folder_exists(self.cfg.move_to):
                self.client.create_folder(self.cfg.move_to)
            self.client.move(uids, self.cfg.move_to)

    def has_message_id(self, message_id: str) -> bool:
        return bool(self.client.search(["HEADER", "Message-ID", message_id]))

    def append(self, raw: bytes) -> None:
        self.client.append(self.folder, raw, flags=(b"\\Seen",))

    def wait(self, seconds: float, poll_seconds: float, stop: threading.Event) -> None:
        """Until the server says something changed, `seconds` pass, or `stop` is set."""
        deadline = time.monotonic() + seconds
        if self.announced():
            return  # mail came while other mail was taken: search again before waiting
        if not self.has_idle:
            end = min(deadline, time.monotonic() + poll_seconds)
            while not stop.is_set() and time.monotonic() < end:
                stop.wait(0.5)
            self.client.noop()
            return
        self.client.idle()
        try:
            if self.buffered():
                return  # news came with "+ idling"
            while not stop.is_set() and time.monotonic() < deadline:
                if self.client.idle_check(timeout=0.5):
                    break
        finally:
            self.client.idle_done()

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001 - a dead connection cannot log out
                pass
            self.client = None


class SentFolder:
    """The outbox sender's connection to the sent folder, kept between its look-ups and copies:
    made at first use, made again when it dropped, one call at a time (the calls run in worker
    threads)."""

    def __init__(self, cfg: Imap, password: str, folder: str, timeout: float = 30.0) -> None:
        self.conn = ImapFolder(cfg, password, folder, timeout)
        self.lock = threading.Lock()

    def _run(self, step: Callable[[ImapFolder, bool], T]) -> T:
        with self.lock:
            kept = self.conn.client is not None
            if not kept:
                self.conn.connect()
            try:
                return step(self.conn, False)
            except CONNECTION_ERRORS:
                self.conn.close()
                if not kept:
                    raise
            # The kept connection had dropped (server restarted, logged out idle): once more on a new one.
            self.conn.connect()
            try:
                return step(self.conn, True)
            except CONNECTION_ERRORS:
                self.conn.close()
                raise

    def has_message_id(self, message_id: str) -> bool:
        return self._run(lambda conn, _again: conn.has_message_id(message_id))

    def copy(self, message_id: str, raw: bytes, look_first: bool = False) -> bool:
        """Append `raw` (Message-ID `message_id`); False when it was there already. A second try
        looks first: the APPEND that failed may have landed all the same."""
        def step(conn: ImapFolder, again: bool) -> bool:
            if (look_first or again) and conn.has_message_id(message_id):
                return False
            conn.append(raw)
            return True
        return self._run(step)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


# Runs the pipeline on a batch of mails, in order; how many were committed (then flagged).
Process = Callable[[list[tuple[bytes, Seen]]], Awaitable[int]]
BATCH_MAILS = 20
BATCH_BYTES = 8_000_000


@dataclass
class FolderWatcher:
    """The asyncio task that keeps one folder processed, reconnecting with backoff."""
    mailbox: str
    folder: str
    cfg: Imap
    password: str
    process: Process
    state: FolderStateStore
    daemon: Daemon
    stop: asyncio.Event

    async def run(self) -> None:
        backoff = 1.0
        thread_stop = threading.Event()
        relay = asyncio.create_task(self._relay_stop(thread_stop))
        try:
            while not self.stop.is_set():
                conn = ImapFolder(self.cfg, self.password, self.folder, self.daemon.imap_timeout_seconds)
                try:
                    await asyncio.to_thread(conn.connect)
                    backoff = 1.0
                    await self._serve(conn, thread_stop)
                except (*CONNECTION_ERRORS, SQLAlchemyError, StoreError) as exc:
                    # The database failing (locked, full) is waited out like a lost connection:
                    # the mail stays on the server, unflagged, and is taken again after it.
                    reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                    lost = "database error" if isinstance(exc, SQLAlchemyError | StoreError) else "imap connection lost"
                    log.warning(lost, extra={"mailbox": self.mailbox, "folder": self.folder, "reason": reason})
                    with contextlib.suppress(SQLAlchemyError):  # the store may be what failed
                        await self.state.error(self.mailbox, self.folder, reason)
                    delay = backoff * (0.5 + random.random())  # jitter: two watchers never hammer together
                    backoff = min(backoff * 2, self.daemon.backoff_max_seconds)
                    try:
                        await asyncio.wait_for(self.stop.wait(), timeout=delay)
                    except asyncio.TimeoutError:
                        pass
                finally:
                    await asyncio.to_thread(conn.close)
        finally:
            relay.cancel()

    async def _relay_stop(self, thread_stop: threading.Event) -> None:
        await self.stop.wait()
        thread_stop.set()

    async def _serve(self, conn: ImapFolder, thread_stop: threading.Event) -> None:
        known = await self.state.load(self.mailbox, self.folder)
        if known.uidvalidity != conn.uidvalidity:
            # New UIDs for everything: look at all mail not flagged yet; the pipeline knows each
            # mail by its Message-ID or content, so nothing is answered twice.
            newest = await asyncio.to_thread(conn.uids_after, 0)
            uids = await asyncio.to_thread(conn.uids_not_done)
            await self.state.reset(self.mailbox, self.folder, conn.uidvalidity)
            await self._take(conn, uids)
            if newest and not self.stop.is_set():
                await self.state.advance(self.mailbox, self.folder, conn.uidvalidity, newest[-1])
        while not self.stop.is_set():
            known = await self.state.load(self.mailbox, self.folder)
            await self._take(conn, await asyncio.to_thread(conn.uids_after, known.last_uid))
            await self.state.contact(self.mailbox, self.folder)
            if self.stop.is_set():
                break
            await asyncio.to_thread(conn.wait, self.daemon.idle_minutes * 60, self.daemon.poll_seconds, thread_stop)

    async def _take(self, conn: ImapFolder, uids: list[int]) -> None:
        """Take the mail a batch at a time: one FETCH, the batch processed in order, then its
        flags set and the progress saved at once. A crash in between costs nothing: the next
        start takes the batch again and the pipeline knows each mail it has recorded."""
        for start in range(0, len(uids), 500):
            for batch in await asyncio.to_thread(conn.batches, uids[start:start + 500]):
                if self.stop.is_set():
                    return  # the mail in hand is finished; the rest waits for the next start
                raws = await asyncio.to_thread(conn.fetch, batch)
                items = [(raws[uid], Seen(self.mailbox, self.folder, conn.uidvalidity, uid)) for uid in batch
                         if uid in raws]
                done = await self.process(items)
                if done:
                    await asyncio.to_thread(conn.mark_done, [seen.uid for _, seen in items[:done]])
                # Up to the first mail not taken (mail gone from the server counts as taken).
                pending = items[done][1].uid if done < len(items) else None
                taken = [uid for uid in batch if pending is None or uid < pending]
                if taken:
                    await self.state.advance(self.mailbox, self.folder, conn.uidvalidity, taken[-1])
                if pending is not None:
                    if self.stop.is_set():
                        return
                    raise StoreError("the database did not take a mail; it is taken again after a pause")


class FolderStateStore:
    """FolderState rows, written through the daemon's single database thread."""

    def __init__(self, engine, run_db: Callable, clock: Callable[[], dt.datetime]) -> None:
        self.engine, self.run_db, self.clock = engine, run_db, clock

    def _row(self, session: Session, mailbox: str, folder: str) -> FolderState:
        row = session.exec(select(FolderState).where(FolderState.mailbox == mailbox,
                                                     FolderState.folder == folder)).first()
        if row is None:
            row = FolderState(mailbox=mailbox, folder=folder)
            session.add(row)
        return row

    def _update(self, mailbox: str, folder: str, change: Callable[[FolderState], None]) -> FolderState:
        with Session(self.engine, expire_on_commit=False) as session:
            row = self._row(session, mailbox, folder)
            change(row)
            session.add(row)
            session.commit()
            return row

    async def load(self, mailbox: str, folder: str) -> FolderState:
        return await self.run_db(self._update, mailbox, folder, lambda row: None)

    async def reset(self, mailbox: str, folder: str, uidvalidity: int) -> None:
        def change(row: FolderState) -> None:
            row.uidvalidity, row.last_uid = uidvalidity, 0
        await self.run_db(self._update, mailbox, folder, change)

    async def advance(self, mailbox: str, folder: str, uidvalidity: int, uid: int) -> None:
        def change(row: FolderState) -> None:
            row.uidvalidity, row.last_uid = uidvalidity, max(row.last_uid, uid)
            row.last_contact, row.last_error = self.clock(), ""
        await self.run_db(self._update, mailbox, folder, change)

    async def contact(self, mailbox: str, folder: str) -> None:
        def change(row: FolderState) -> None:
            row.last_contact, row.last_error = self.clock(), ""
        await self.run_db(self._update, mailbox, folder, change)

    async def error(self, mailbox: str, folder: str, reason: str) -> None:
        def change(row: FolderState) -> None:
            row.last_error = reason
        await self.run_db(self._update, mailbox, folder, change)
