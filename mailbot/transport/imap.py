"""Watch one IMAP folder: catch up by UID, then IDLE (or poll), and hand each new mail over.

imapclient is synchronous, so each folder has its own connection used from a worker thread;
the watcher itself is an asyncio task. Processed mail is never deleted and \\Seen is never
touched (people read these inboxes): the bot sets its own keyword, or moves the mail, only
after the database has committed what it learned.
"""

from __future__ import annotations

import ast
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
from dataclasses import dataclass, field
from typing import TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from sqlalchemy.exc import SQLAlchemyError

from mailbot.config import Daemon, Imap
from mailbot.errors import (
    ConnectionStepFailed,
    ImapCommandFailed,
    ImapConnectionLost,
    ImapError,
    ImapLoginFailed,
    SignInError,
    StoreError,
)
from mailbot.seen import Seen
from mailbot.shims import imapclient_imaplib
from mailbot.store.folders import FolderStateStore
from mailbot.transport.oauth import Credential, imap_login
from mailbot.transport.sent import Filing

log = logging.getLogger("mailbot.imap")
# What imapclient, imaplib, ssl and the socket raise when a connection fails or the server
# refuses: turned into ImapError by `imap_error`, only around calls into the library (imaplib
# raises ValueError on a connection it closed, and a certificate that does not verify is one).
LIBRARY_ERRORS = (IMAPClientError, OSError, EOFError, ValueError)
T = TypeVar("T")


def imap_error(exc: BaseException, conn: ImapFolder) -> ImapError:
    """The narrow error for what the library raised, naming the host and the step."""
    host, step = conn.cfg.host, conn.step
    if isinstance(exc, LoginError):
        return ImapLoginFailed(f"login refused by {host}: {exc}")
    if isinstance(exc, socket.gaierror):
        return ImapConnectionLost(f"cannot resolve {host}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return ImapConnectionLost(f"connection refused by {host}:{conn.cfg.port}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImapConnectionLost(f"certificate of {host} not trusted: {exc.verify_message}")
    if isinstance(exc, TimeoutError):
        return ImapConnectionLost(f"no answer from {host} within {conn.timeout:g} s ({step})")
    if isinstance(exc, IMAPClientError) and not isinstance(exc, IMAPClientAbortError):
        return ImapCommandFailed(f"{host} refused {step}: {exc}")
    return ImapConnectionLost(f"connection to {host} lost ({step}): {type(exc).__name__}: {exc}")


def call(conn: ImapFolder, fn: Callable[..., T], *args) -> T:
    """`fn(*args)` -- a step on `conn` -- with the library's errors turned into ImapError."""
    try:
        return fn(*args)
    except LIBRARY_ERRORS as exc:
        raise imap_error(exc, conn) from exc


def open_imap(cfg: Imap, timeout: float) -> IMAPClient:
    """A connection to `cfg`'s server with TLS as configured (certificates verified), greeted but
    not logged in. A failure names the host and the step (ConnectionStepFailed)."""
    context = ssl.create_default_context()
    try:
        if cfg.security == "tls":
            client = IMAPClient(cfg.host, port=cfg.port, ssl=True, ssl_context=context, timeout=timeout)
        else:
            client = IMAPClient(cfg.host, port=cfg.port, ssl=False, timeout=timeout)
    except socket.gaierror as exc:
        raise ConnectionStepFailed(cfg.host, "resolve", str(exc)) from exc
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise ConnectionStepFailed(cfg.host, "tls", str(exc)) from exc
    except OSError as exc:
        raise ConnectionStepFailed(cfg.host, "connect", f"port {cfg.port}: {exc}") from exc
    try:
        if cfg.security == "starttls":
            client.starttls(context)  # fails when not offered: never "upgrade if offered"
        sock = client.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except (IMAPClientError, ssl.SSLError, ssl.CertificateError) as exc:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise ConnectionStepFailed(cfg.host, "tls", f"STARTTLS: {exc}") from exc
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


def login(client: IMAPClient, cfg: Imap, password: Credential) -> None:
    """Log in on a connection from open_imap, with a password or OAuth2 (transport/oauth.py).
    A refusal names the host and the server's answer; a refused OAuth2 sign-in is a
    SignInError naming the mailbox."""
    try:
        imap_login(client, cfg.user, password)
    except LoginError as exc:
        answer = str(exc)  # imapclient gives the server's bytes as their repr: b'[AUTHENTICATIONFAILED] ...'
        if answer[:2] in ("b'", 'b"'):
            answer = ast.literal_eval(answer).decode(errors="replace")
        raise ImapLoginFailed(f"login refused by {cfg.host}: {answer}") from exc


def keyword_allowed(selected: dict, keyword: str) -> bool:
    """Whether the folder SELECT answered keeps `keyword` on its mail: PERMANENTFLAGS has \\*
    (any new keyword) or names the keyword itself (RFC 3501 7.1)."""
    flags = {bytes(f).lower() for f in selected.get(b"PERMANENTFLAGS", ())}
    return b"\\*" in flags or keyword.encode().lower() in flags


@dataclass(frozen=True)
class Fetched:
    raw: bytes
    arrived: dt.datetime | None  # INTERNALDATE: when the server received the mail


def _aware(value: object) -> dt.datetime | None:
    """INTERNALDATE as an aware time (None when the server gave none that imapclient could read)."""
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


class ImapFolder:
    """One synchronous connection to one folder."""

    def __init__(self, cfg: Imap, password: Credential, folder: str, timeout: float = 30.0) -> None:
        self.cfg, self.password, self.folder, self.timeout = cfg, password, folder, timeout
        self.client: IMAPClient | None = None
        self.step = "connect"  # what it does now, for the error messages
        self.uidvalidity = 0
        self.can_keyword = False
        self.has_idle = False

    def connect(self) -> int:
        cfg = self.cfg
        self.step = "connect"
        client = open_imap(cfg, self.timeout)
        try:
            self.step = "login"
            login(client, cfg, self.password)
            self.step = f"select {self.folder}"
            if not client.folder_exists(self.folder):
                client.create_folder(self.folder)
            selected = client.select_folder(self.folder)
        except BaseException:
            with contextlib.suppress(Exception):  # never logged in, or the connection is gone
                client.shutdown()
            raise
        client.normalise_times = False  # INTERNALDATE with the server's offset, not naive local time
        self.client = client
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        self.can_keyword = keyword_allowed(selected, cfg.keyword)
        self.has_idle = client.has_capability("IDLE")
        return self.uidvalidity

    def uids_after(self, last_uid: int) -> list[int]:
        self.step = "search"
        assert self.client is not None  # opened
        self.announced()  # from this search on, what the server announces is news to wait()
        # "UID n:*" also returns the last message when its UID is below n: filter here.
        return sorted(u for u in self.client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)

    def announced(self) -> bool:
        """True when the server announced new mail (EXISTS) since the last call, in its answer
        to another command -- a FETCH or STORE while mail was being taken: imapclient keeps such
        announcements without a word, and IDLE would not repeat them."""
        return imapclient_imaplib.announced(self.client)

    def buffered(self) -> bool:
        """True when lines from the server already wait in imaplib's buffer, where idle_check()
        -- which polls the socket -- never looks: Dovecot announces what came since the last
        command right after "+ idling", often in the same read."""
        return imapclient_imaplib.buffered(self.client)

    def uids_not_done(self) -> list[int]:
        """After a UIDVALIDITY change: every message the bot has not flagged."""
        self.step = "search"
        assert self.client is not None  # opened
        if self.can_keyword:
            return sorted(self.client.search(["UNKEYWORD", self.cfg.keyword]))
        return sorted(self.client.search(["ALL"]))

    def batches(self, uids: list[int]) -> list[list[int]]:
        """`uids` in batches of at most BATCH_MAILS mails and BATCH_BYTES bytes (one mail alone
        when it is larger), so that a backlog is never in memory at once."""
        self.step = "fetch sizes"
        assert self.client is not None  # opened
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

    def fetch(self, uids: list[int]) -> dict[int, Fetched]:
        """The mails of `uids` still there, with when the server received each, in one FETCH
        (BODY.PEEK leaves \\Seen alone)."""
        self.step = "fetch"
        assert self.client is not None  # opened
        data = self.client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
        return {uid: Fetched(data[uid][b"BODY[]"], _aware(data[uid].get(b"INTERNALDATE")))
                for uid in uids if b"BODY[]" in data.get(uid, {})}

    def mark_done(self, uids: list[int]) -> None:
        self.step = "flag done"
        assert self.client is not None  # opened
        if self.can_keyword:
            self.client.add_flags(uids, [self.cfg.keyword.encode()])
        elif self.cfg.move_to:
            if not self.client.folder_exists(self.cfg.move_to):
                self.client.create_folder(self.cfg.move_to)
            self.client.move(uids, self.cfg.move_to)

    def has_message_id(self, message_id: str) -> bool:
        self.step = "look up"
        assert self.client is not None  # opened
        return bool(self.client.search(["HEADER", "Message-ID", message_id]))

    def append(self, raw: bytes) -> None:
        self.step = "append"
        assert self.client is not None  # opened
        self.client.append(self.folder, raw, flags=(b"\\Seen",))

    def wait(self, seconds: float, poll_seconds: float, stop: threading.Event,
             wake: threading.Event | None = None) -> None:
        """Until the server says something changed, `seconds` pass, or `stop` (or `wake`) is set."""
        stop_or_wake = _either(stop, wake)
        deadline = time.monotonic() + seconds
        self.step = "idle"
        assert self.client is not None  # opened
        if self.announced():
            return  # mail came while other mail was taken: search again before waiting
        if not self.has_idle:
            end = min(deadline, time.monotonic() + poll_seconds)
            while not stop_or_wake() and time.monotonic() < end:
                stop.wait(0.5)
            self.client.noop()
            return
        self.client.idle()
        try:
            if self.buffered():
                return  # news came with "+ idling"
            while not stop_or_wake() and time.monotonic() < deadline:
                if self.client.idle_check(timeout=0.5):
                    break
        finally:
            self.client.idle_done()

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001, S110 - a dead connection cannot log out
                pass
            self.client = None


class ImapSentFolder:
    """The sent folder on IMAP (a SentFolder): the sender's connection to it, kept between its
    look-ups and copies, made at first use, made again when it dropped, one call at a time (the
    calls run in worker threads)."""

    def __init__(self, cfg: Imap, password: Credential, folder: str, filing: Filing, timeout: float = 30.0) -> None:
        self.conn = ImapFolder(cfg, password, folder, timeout)
        self.filing = filing
        self.lock = threading.Lock()

    def _run(self, step: Callable[[ImapFolder, bool], T]) -> T:
        with self.lock:
            kept = self.conn.client is not None
            try:
                if not kept:
                    self.conn.connect()
                return step(self.conn, False)
            except LIBRARY_ERRORS as exc:
                self.conn.close()
                if not kept:
                    raise imap_error(exc, self.conn) from exc
            # The kept connection had dropped (server restarted, logged out idle): once more on a new one.
            try:
                self.conn.connect()
                return step(self.conn, True)
            except LIBRARY_ERRORS as exc:
                self.conn.close()
                raise imap_error(exc, self.conn) from exc

    async def find(self, message_id: str) -> bool | None:
        try:
            return await asyncio.to_thread(self._run, lambda conn, _again: conn.has_message_id(message_id))
        except ImapError:  # unknown: the sender sends again only when sure it is absent
            return None

    async def add(self, message_id: str, raw: bytes, look_first: bool = False) -> bool:
        """Append `raw` (Message-ID `message_id`); False when it was there already. A second try
        looks first: the APPEND that failed may have landed all the same."""
        def step(conn: ImapFolder, again: bool) -> bool:
            if (look_first or again) and conn.has_message_id(message_id):
                return False
            conn.append(raw)
            return True
        return await asyncio.to_thread(self._run, step)

    async def close(self) -> None:
        def close() -> None:
            with self.lock:
                self.conn.close()
        await asyncio.to_thread(close)


# Runs the pipeline on a batch of mails, in order; how many were committed (then flagged).
Process = Callable[[list[tuple[bytes, Seen]]], Awaitable[int]]
BATCH_MAILS = 20
BATCH_BYTES = 8_000_000


def _either(stop: threading.Event, wake: threading.Event | None) -> Callable[[], bool]:
    return (lambda: stop.is_set() or wake.is_set()) if wake is not None else stop.is_set


@dataclass
class FolderWatcher:
    """The asyncio task that keeps one folder processed, reconnecting with backoff."""
    mailbox: str
    folder: str
    cfg: Imap
    password: Credential
    process: Process
    state: FolderStateStore
    daemon: Daemon
    stop: asyncio.Event
    # Set by the staff page beside the daemon (a mail released from the quarantine): the
    # watcher looks at once rather than at the end of its IDLE.
    wake: threading.Event = field(default_factory=threading.Event)

    async def run(self) -> None:
        backoff = 1.0
        thread_stop = threading.Event()
        relay = asyncio.create_task(self._relay_stop(thread_stop))
        try:
            while not self.stop.is_set():
                conn = ImapFolder(self.cfg, self.password, self.folder, self.daemon.imap_timeout_seconds)
                try:
                    await self._io(conn, conn.connect)
                    backoff = 1.0
                    await self._serve(conn, thread_stop)
                except (ImapError, SignInError, SQLAlchemyError, StoreError) as exc:
                    # The database failing (locked, full) is waited out like a lost connection:
                    # the mail stays on the server, unflagged, and is taken again after it. Any
                    # other error -- a bug in the pipeline -- ends the task, loudly.
                    reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                    lost = ("imap login refused" if isinstance(exc, (ImapLoginFailed, SignInError)) else
                            "imap connection lost" if isinstance(exc, ImapError) else "database error")
                    log.warning(lost, extra={"mailbox": self.mailbox, "folder": self.folder, "reason": reason})
                    with contextlib.suppress(SQLAlchemyError):  # the store may be what failed
                        await self.state.error(self.mailbox, self.folder, reason)
                    delay = backoff * (0.5 + random.random())  # noqa: S311 - jitter: two watchers never hammer together
                    backoff = min(backoff * 2, self.daemon.backoff_max_seconds)
                    try:
                        await asyncio.wait_for(self.stop.wait(), timeout=delay)
                    except TimeoutError:
                        pass
                finally:
                    await asyncio.to_thread(conn.close)
        finally:
            relay.cancel()

    @staticmethod
    async def _io(conn: ImapFolder, fn: Callable[..., T], *args) -> T:
        """A step on the connection, in a worker thread: what can fail there is an ImapError."""
        return await asyncio.to_thread(call, conn, fn, *args)

    async def _relay_stop(self, thread_stop: threading.Event) -> None:
        await self.stop.wait()
        thread_stop.set()

    async def _serve(self, conn: ImapFolder, thread_stop: threading.Event) -> None:
        known = await self.state.load(self.mailbox, self.folder)
        if known.uidvalidity != conn.uidvalidity:
            # New UIDs for everything: look at all mail not flagged yet; the pipeline knows each
            # mail by its Message-ID or content, so nothing is answered twice.
            newest = await self._io(conn, conn.uids_after, 0)
            uids = await self._io(conn, conn.uids_not_done)
            await self.state.reset(self.mailbox, self.folder, conn.uidvalidity)
            await self._take(conn, uids)
            if newest and not self.stop.is_set():
                await self.state.advance(self.mailbox, self.folder, conn.uidvalidity, newest[-1])
        while not self.stop.is_set():
            self.wake.clear()
            known = await self.state.load(self.mailbox, self.folder)
            await self._take(conn, await self._io(conn, conn.uids_after, known.last_uid))
            await self._take_released(conn, known.last_uid)
            await self.state.contact(self.mailbox, self.folder)
            if self.stop.is_set():
                break
            await self._io(conn, conn.wait, self.daemon.idle_minutes * 60, self.daemon.poll_seconds, thread_stop,
                           self.wake)

    async def _take_released(self, conn: ImapFolder, last_uid: int) -> None:
        """The mail a person let out of the quarantine, fetched again by its UID here."""
        uids = await self.state.released(self.mailbox, self.folder, conn.uidvalidity, last_uid)
        if not uids:
            return
        await self._take(conn, uids)
        if not self.stop.is_set():
            await self.state.gone(self.mailbox, self.folder, conn.uidvalidity, uids,
                                  f"taken again, but no longer in {self.mailbox} {self.folder} on the server")

    async def _take(self, conn: ImapFolder, uids: list[int]) -> None:
        """Take the mail a batch at a time: one FETCH, the batch processed in order, then its
        flags set and the progress saved at once. A crash in between costs nothing: the next
        start takes the batch again and the pipeline knows each mail it has recorded."""
        for start in range(0, len(uids), 500):
            for batch in await self._io(conn, conn.batches, uids[start:start + 500]):
                if self.stop.is_set():
                    return  # the mail in hand is finished; the rest waits for the next start
                fetched = await self._io(conn, conn.fetch, batch)
                items = [(fetched[uid].raw,
                          Seen(self.mailbox, self.folder, conn.uidvalidity, uid, fetched[uid].arrived))
                         for uid in batch if uid in fetched]
                done = await self.process(items)
                if done:
                    await self._io(conn, conn.mark_done, [seen.uid for _, seen in items[:done]])
                # Up to the first mail not taken (mail gone from the server counts as taken).
                pending = items[done][1].uid if done < len(items) else None
                taken = [uid for uid in batch if pending is None or uid < pending]
                if taken:
                    await self.state.advance(self.mailbox, self.folder, conn.uidvalidity, taken[-1])
                if pending is not None:
                    if self.stop.is_set():
                        return
                    raise StoreError("the database did not take a mail; it is taken again after a pause")
