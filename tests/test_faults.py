"""Fault injection against the real servers: the session Dovecot and a LocalSmtp on 127.0.0.1.

kill -9 at random moments, the IMAP server restarted or stopped, a connection that goes silent,
a new UIDVALIDITY, \\Seen set by a person, SMTP refusals and outages, a crash right after the
SMTP accept, mail loops, a locked or full database. After each: every mail recorded once and
processed, every answer sent once (counted at the SMTP server), nothing left behind.

The random kills use MAILBOT_FAULT_SEED when it is set (the seed is printed on failure).
"""

import asyncio
import collections
import contextlib
import datetime as dt
import email
import email.parser
import email.policy
import functools
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient
from mailworld import (  # noqa: F401 - fixtures
    BOSA,
    WL,
    World,
    bot_log,
    local_smtp,
    purpose,
    to_toml,
    wait_for,
    world,
)
from sqlalchemy import event
from sqlmodel import col, select

from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.season import XLSX, Mail, brussels
from mailbot.status import status
from mailbot.store.models import Decision, FolderState, Message, OutboxMail, Sighting
from mailbot.transport.imap import ImapFolder
from mailbot.transport.stamp import stamp

FORM_RULES = load_rules()

CLIENTS = "sambreville.be"
SEED = int(os.environ.get("MAILBOT_FAULT_SEED", time.time_ns() % 1_000_000))
ANSWERS = ("form_complete", "form_missing")


# --- the world -----------------------------------------------------------------------------

@functools.cache
def order_form(n: int) -> bytes:
    return fill_form("fr", complete_values("fr", project_name=f"Projet {n}"), rules=FORM_RULES)


def client_mail(n: int, form: bool = False) -> bytes:
    """Client n's first mail, from its own address, BOSA in copy: an order form (answered
    form_complete) or the announcement of one (answered form_missing)."""
    attachments = [("Bon de commande.xlsx", order_form(n), XLSX)] if form else []
    return Mail(brussels(2027, 3, 1, 9), f"client{n}@{CLIENTS}", [WL], f"BOSA M1036 - Bon de commande – Projet {n}",
                "Bonjour, voici notre demande.", cc=[BOSA], attachments=attachments,
                message_id=f"<c{n}@{CLIENTS}>").to_bytes()


def mid(n: int) -> str:
    return f"<c{n}@{CLIENTS}>"


@functools.lru_cache(maxsize=8192)
def _headers(data: bytes) -> email.message.Message:
    return email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)


def header(envelope, name: str) -> str | None:
    value = _headers(envelope.data)[name]
    return None if value is None else str(value)


def answer_counts(world) -> collections.Counter:
    """In-Reply-To of every mail the SMTP server accepted for a client."""
    return collections.Counter(header(e, "In-Reply-To") for e in world.smtp.envelopes
                               if e.accepted and any(r.endswith("@" + CLIENTS) for r in e.rcpt_tos))


def unfinished(world) -> int:
    """Mail not processed yet, plus outbox mail not sent yet."""
    return (world.count(Message, Message.status != "processed")
            + world.count(OutboxMail, col(OutboxMail.state).in_(["pending", "sending", "handed"])))


def folder_ids(world, box="worldline", folder="Sent") -> collections.Counter:
    """Message-IDs in one of the bot's folders, with how often each is there."""
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users[box])
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    return collections.Counter(str(_headers(d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])["Message-ID"])
                               for d in data.values())


def assert_all_once(world, expected: list[str], note: str = "", copy_failed: frozenset[str] = frozenset()) -> None:
    """Each expected client mail recorded once and processed, answered once (in the outbox and
    at the SMTP server), each answer's copy once in the Sent folder -- but those whose copy
    failed (`copy_failed`: the IMAP server was down right then) -- nothing else pending."""
    with world.session() as s:
        ids = collections.Counter(s.exec(select(Message.message_id)).all())
        statuses = collections.Counter(s.exec(select(Message.status)).all())
        outbox = collections.Counter(s.exec(select(OutboxMail.state)).all())
        answered = collections.Counter(s.exec(select(OutboxMail.in_reply_to)
                                              .where(col(OutboxMail.purpose).in_(ANSWERS))).all())
        answer_ids = set(s.exec(select(OutboxMail.message_id)).all())
    assert {m: ids[m.strip("<>")] for m in expected} == dict.fromkeys(expected, 1), note
    assert max(ids.values()) == 1, note  # every mail once, the bot's own answers (copies) included
    assert set(statuses) == {"processed"}, f"{statuses} {note}"
    assert outbox == {"sent": len(expected)}, f"{outbox} {note}"
    assert answered == {m.strip("<>"): 1 for m in expected}, note
    sent = answer_counts(world)
    assert not {m: c for m, c in sent.items() if c != 1}, f"sent more than once {note}"
    assert set(sent) == set(expected), f"never sent: {sorted(set(expected) - set(sent))} {note}"
    copies = folder_ids(world)
    assert copy_failed <= answer_ids and set(copies.values()) == {1}, f"sent folder: {copies.most_common(3)} {note}"
    assert {m.strip("<>") for m in copies} == answer_ids - copy_failed, f"sent folder: {copies} {note}"


class Bot:
    """`python -m mailbot run --config FILE` in a subprocess, its log in a file."""

    def __init__(self, world, tmp_path):
        self.world, self.config, self.log = world, tmp_path / "bot.toml", tmp_path / "bot.log"
        self.proc = None
        self.starts = 0

    def start(self) -> "Bot":
        self.config.write_text(to_toml(self.world.data))
        self.starts += 1
        with open(self.log, "a") as log:
            log.write(f"--- start {self.starts}\n")
            log.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ))
        return self

    def wait_started(self, timeout=30.0) -> None:
        marker = f"--- start {self.starts}\n"
        wait_for(lambda: "'started'" in self.log.read_text().rpartition(marker)[2] or self.proc.poll() is not None,
                 timeout, "the daemon to start")
        assert self.proc.poll() is None, self.tail()

    def wait_for(self, predicate, timeout=30.0, what="condition", interval=0.05):
        try:
            return wait_for(predicate, timeout, what, interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the daemon's log ends:\n{self.tail()}") from None

    def wait_settled(self, timeout=30.0) -> None:
        """World.wait_settled, with the daemon's log on failure."""
        self.wait_for(self.world.settled, timeout, "the bot to have nothing left to do", interval=0.1)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: the daemon finishes the mail in hand and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(30) == 0, self.tail()
        finally:
            if self.proc.poll() is None:
                self.kill()

    def tail(self, lines=30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def bot(world, tmp_path):
    b = Bot(world, tmp_path)
    yield b
    if b.proc is not None and b.proc.poll() is None:
        b.kill()


# --- 1. kill -9 at random moments ------------------------------------------------------------

def kill_rounds(world, bot, rounds: int, mails: int = 200, forms: int = 20) -> None:
    """`mails` clients write (one in ten with an order form); the daemon is killed -9 `rounds`
    times at random moments while it works through them, then left to finish."""
    rng = random.Random(SEED)
    world.append_all("worldline", [client_mail(n, form=n % (mails // forms) == 0) for n in range(mails)])
    kills = []
    for _ in range(rounds):
        bot.start().wait_started()
        pause = rng.uniform(0.05, 1.5)
        time.sleep(pause)
        bot.kill()
        kills.append((round(pause, 2), sum(answer_counts(world).values())))
    note = f"(seed {SEED}; kills after (s, answers so far): {kills})"
    bot.start().wait_started()
    bot.wait_for(lambda: len(answer_counts(world)) == mails and unfinished(world) == 0, timeout=150,
                 what=f"every answer {note}")
    bot.wait_settled()  # an answer sent twice would have come by then
    bot.stop()
    # most kills must come while there is work (a faster bot finishes sooner)
    assert sum(done < mails for _, done in kills) >= max(1, rounds // 2), f"the kills came after the work was done {note}"
    assert_all_once(world, [mid(n) for n in range(mails)], f"{note}\n{bot.tail()}")
    with world.session() as s:
        assert not s.exec(select(Message).where(Message.attempts > 0)).all()  # no mail failed


def test_kill9_at_random_moments_then_restart(world, bot):
    kill_rounds(world, bot, rounds=3)


def test_sigterm_while_the_daemon_starts_is_a_clean_exit(world, bot):
    database = Path(world.data["database"]["url"].removeprefix("sqlite:///"))
    database.unlink(missing_ok=True)
    bot.start()
    # The database appears while the daemon migrates it, rules and servers still to come: no
    # signal handler of asyncio's yet. (Earlier, Python itself is still starting: nothing to do.)
    bot.wait_for(lambda: database.exists(), timeout=30, what="the daemon to open its database")
    bot.stop()  # exit status 0, not killed by the signal
    assert "'started'" not in bot.tail()  # it was stopped while starting


@pytest.mark.slow
def test_kill9_twenty_times(world, bot):
    kill_rounds(world, bot, rounds=20, mails=600)


# --- 2. Dovecot restarted, and stopped for a while, during IDLE --------------------------------

def test_dovecot_restarted_and_stopped_during_idle(world, dovecot, caplog):
    world.start()
    world.append("worldline", client_mail(1))  # the bot may be on it when the server goes
    dovecot.restart()
    world.append("worldline", client_mail(2))  # before the bot is back
    wait_for(lambda: len(answer_counts(world)) == 2, timeout=30, what="the answers after the restart")
    world.append("worldline", client_mail(3))

    def lost():
        return collections.Counter((r.mailbox, r.folder) for r in caplog.records
                                   if r.getMessage() == "imap connection lost")

    before = lost()
    dovecot.stop()
    try:
        wait_for(lambda: world.count(FolderState, FolderState.last_error != "") >= 4, what="the bot to see it gone")
        with world.session() as s:
            watchers = [(f.mailbox, f.folder) for f in s.exec(select(FolderState))]
        # Stopped for a while: every watcher has tried again, in vain (the loss, then a retry).
        wait_for(lambda: all(lost()[w] - before[w] >= 2 for w in watchers), what="every watcher to try again")
    finally:
        dovecot.start()
    world.append("worldline", client_mail(4))
    wait_for(lambda: len(answer_counts(world)) == 4 and unfinished(world) == 0, timeout=30,
             what="the answers after the outage")
    wait_for(lambda: world.count(FolderState, FolderState.last_error != "") == 0, what="every watcher back")
    # An answer that went while the server was away owes its copy to the sent folder: added
    # once the server is back, once.
    wait_for(lambda: world.count(OutboxMail, OutboxMail.copy_owed == True) == 0, timeout=30,  # noqa: E712
             what="the owed sent copies")
    world.wait_settled()
    assert_all_once(world, [mid(n) for n in (1, 2, 3, 4)])


@pytest.mark.parametrize("moment", ["fetch", "wait"], ids=["while-another-is-taken", "right-before-idle"])
def test_mail_arriving_while_the_watcher_is_busy_is_not_left_waiting(world, monkeypatch, moment):
    """Mail that comes while the watcher takes other mail is announced in the answers to its
    FETCH and STORE; mail that comes between its last command and IDLE is announced right after
    "+ idling", in the same read. Neither may wait for the next IDLE (25 minutes)."""
    armed = threading.Event()
    fetch, wait = ImapFolder.fetch, ImapFolder.wait

    def second_mail_comes(folder: ImapFolder) -> None:
        if armed.is_set() and folder.folder == "INBOX" and folder.cfg.user == world.users["worldline"][0]:
            armed.clear()
            world.append("worldline", client_mail(2))

    def hooked(self, *args):
        if moment == "fetch":  # once the first mail is fetched, before it is flagged
            raw = fetch(self, *args)
            second_mail_comes(self)
            return raw
        second_mail_comes(self)  # right before the watcher goes idle
        return wait(self, *args)

    monkeypatch.setattr(ImapFolder, moment, hooked)
    world.start()
    armed.set()
    world.append("worldline", client_mail(1))
    wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=10,
             what="the mail that came meanwhile")
    assert not armed.is_set()
    assert_all_once(world, [mid(1), mid(2)])


# --- 3. the connection goes silent (no FIN, no RST) --------------------------------------------

class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 in its own thread. blackhole(): the connections open now go
    silent for good -- nothing forwarded either way, nothing closed -- and new ones are accepted
    but stay silent, until heal(); connections made after heal() work."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.silent = False
        self.dead: set[int] = set()  # ids of the connections gone silent
        self.live: set[int] = set()
        self.serial = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "BlackholeProxy":
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop)
        self.server = server.result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def blackhole(self) -> None:
        self.silent = True
        self.dead |= self.live

    def heal(self) -> None:
        self.silent = False

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _serve(self, reader, writer) -> None:
        self.serial += 1
        me = self.serial
        (self.dead if self.silent else self.live).add(me)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        self.writers += [writer, up_writer]

        async def pump(src, dst, to_client: bool):
            try:
                while data := await src.read(65536):
                    if me not in self.dead:
                        dst.write(data)
            except (OSError, asyncio.CancelledError):
                pass
            if not (to_client and me in self.dead):  # a dead connection tells the client nothing
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))
        writer.close()
        up_writer.close()


@pytest.fixture
def proxy(dovecot):
    p = BlackholeProxy(dovecot.host, dovecot.port).start()
    yield p
    p.stop()


def test_silent_connection_is_noticed_and_replaced(world, proxy):
    # IDLE is ended every 3 s, and an answer not there 3 s later means the connection is gone.
    world.configure(mailboxes={box: {"imap": {"port": proxy.port}} for box in ("worldline", "bosa")},
                    daemon={"idle_minutes": 0.05, "imap_timeout_seconds": 3})
    world.start()
    started = time.monotonic()
    proxy.blackhole()
    world.append("worldline", client_mail(1))  # straight into Dovecot, which tells nobody
    wait_for(lambda: world.count(FolderState, FolderState.mailbox == "worldline", FolderState.folder == "INBOX",
                                 FolderState.last_error != ""), timeout=15, what="the bot to notice")
    noticed = time.monotonic() - started
    proxy.heal()
    wait_for(lambda: answer_counts(world) == {mid(1): 1} and unfinished(world) == 0, timeout=20,
             what="the mail after the network came back")
    took = time.monotonic() - started
    assert noticed < 10 and took < 30, (noticed, took)
    world.wait_settled()
    assert_all_once(world, [mid(1)])


# --- 4. UIDVALIDITY changed under the bot -----------------------------------------------------

def remade(client: IMAPClient, folder: str, raws: list[bytes]) -> None:
    """`folder` deleted and made again (a new UIDVALIDITY), holding `raws`. Dovecot may refuse an
    APPEND with "Mailbox was deleted under us" when the bot's session, which had the old folder
    open, catches up with the delete meanwhile: then deleted and made again once more."""
    for attempt in range(3):
        if client.folder_exists(folder):
            client.delete_folder(folder)
        if not client.folder_exists(folder):  # the bot may have made it again already
            client.create_folder(folder)
        try:
            for raw in raws:
                client.append(folder, raw)
            return
        except IMAPClient.Error as error:
            if "deleted under us" not in str(error) or attempt == 2:
                raise


def test_new_uidvalidity_rescans_and_answers_nothing_twice(world):
    # INBOX cannot be deleted: the bot watches "Incoming", deleted and made again under it.
    world.configure(mailboxes={"worldline": {"imap": {"inbox": "Incoming"}}})
    world.start()
    for n in (1, 2, 3):
        world.append("worldline", client_mail(n), folder="Incoming")
    wait_for(lambda: len(answer_counts(world)) == 3 and unfinished(world) == 0, timeout=20, what="the answers")
    with world.session() as s:
        before = s.exec(select(FolderState).where(FolderState.folder == "Incoming")).one()
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users["worldline"])
        client.select_folder("Incoming", readonly=True)
        raws = [d[b"BODY[]"] for _, d in sorted(client.fetch(client.search(["ALL"]), ["BODY.PEEK[]"]).items())]
        client.unselect_folder()
        # A migration: the same mail again, without the bot's keyword, and a new one as the SMTP
        # server delivers it.
        remade(client, "Incoming", [*raws, stamp(client_mail(4), f"client4@{CLIENTS}")])
        uidvalidity = client.select_folder("Incoming", readonly=True)[b"UIDVALIDITY"]
    assert len(raws) == 3 and uidvalidity != before.uidvalidity
    wait_for(lambda: len(answer_counts(world)) == 4 and unfinished(world) == 0, timeout=30,
             what="the new mail after the rescan")
    wait_for(lambda: world.count(Sighting, Sighting.uidvalidity == uidvalidity) == 4, what="the rescan")
    world.wait_settled()
    assert_all_once(world, [mid(n) for n in (1, 2, 3, 4)])
    with world.session() as s:
        after = s.exec(select(FolderState).where(FolderState.folder == "Incoming")).one()
    assert (after.uidvalidity, after.last_uid) == (uidvalidity, 4)
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users["worldline"])
        client.select_folder("Incoming", readonly=True)
        assert client.search(["UNKEYWORD", "$MailbotDone"]) == []


# --- 5. \Seen set by a person ------------------------------------------------------------------

def test_mail_read_by_a_person_first_is_processed_and_stays_read(world):
    world.start()
    world.append("worldline", client_mail(1), flags=("\\Seen",))  # read in a mail client at once
    world.append("worldline", client_mail(2))
    wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=20, what="the answers")
    world.wait_settled()
    assert_all_once(world, [mid(1), mid(2)])
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users["worldline"])
        client.select_folder("INBOX", readonly=True)
        flags = {str(_headers(d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])["Message-ID"]): set(d[b"FLAGS"])
                 for d in client.fetch(client.search(["ALL"]),
                                       ["FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]).values()}
    assert flags == {mid(1): {b"\\Seen", b"$MailbotDone"}, mid(2): {b"$MailbotDone"}}


# --- 6. SMTP refusing, then down across a restart ----------------------------------------------

def test_smtp_4xx_several_times_then_accepted_once(world):
    world.start()
    world.smtp.fail_next(2, code=451)
    world.append("worldline", client_mail(1))
    wait_for(lambda: answer_counts(world) == {mid(1): 1} and unfinished(world) == 0, timeout=30,
             what="the answer after two refusals")
    world.wait_settled()
    refused = [e for e in world.smtp.envelopes if not e.accepted]
    assert [e.reply[:3] for e in refused] == ["451"] * 2
    assert all(header(e, "Message-ID") == header(refused[0], "Message-ID") for e in world.smtp.envelopes)
    with world.session() as s:
        row = s.exec(select(OutboxMail)).one()
    assert (row.state, row.attempts) == ("sent", 2)
    assert_all_once(world, [mid(1)])


def test_smtp_5xx_fails_for_good_even_across_a_restart(world):
    world.start()
    world.smtp.fail_next(1, code=554)
    world.append("worldline", client_mail(1))
    world.append("worldline", client_mail(2))
    wait_for(lambda: world.count(OutboxMail, OutboxMail.state == "failed") == 1
             and answer_counts(world) == {mid(2): 1}, timeout=20, what="one refused, one sent")
    world.stop()
    world.start()  # a restart does not try a refused mail again
    world.append("worldline", client_mail(3))
    wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=20, what="the next answer")
    world.wait_settled()
    with world.session() as s:
        failed = s.exec(select(OutboxMail).where(OutboxMail.state == "failed")).one()
        report = status(s.get_bind(), world.settings)
    assert failed.in_reply_to == mid(1).strip("<>") and failed.last_error.startswith("554") and failed.attempts == 1
    assert [header(e, "Message-ID") for e in world.smtp.envelopes if not e.accepted] == [f"<{failed.message_id}>"]
    assert answer_counts(world) == {mid(2): 1, mid(3): 1}
    assert report["outbox"] == {"failed": 1, "sent": 2}


def test_smtp_down_across_a_daemon_restart(world, bot):
    world.smtp.stop()
    bot.start().wait_started()
    for n in (1, 2, 3):
        world.append("worldline", client_mail(n))
    bot.wait_for(lambda: world.count(OutboxMail, OutboxMail.attempts >= 1) == 3, timeout=30,
             what="every answer tried and refused")
    bot.stop()  # a clean stop, the outbox unsent
    with world.session() as s:
        assert {r.state for r in s.exec(select(OutboxMail))} == {"pending"}
    bot.start().wait_started()
    bot.wait_for(lambda: world.count(OutboxMail, OutboxMail.attempts >= 2), timeout=30,
                 what="an answer tried again after the restart, in vain")  # still down
    world.smtp.start()
    bot.wait_for(lambda: len(answer_counts(world)) == 3 and unfinished(world) == 0, timeout=30,
             what="the outbox drained")
    bot.wait_settled()
    bot.stop()
    assert_all_once(world, [mid(n) for n in (1, 2, 3)], bot.tail())


# --- 7. a crash between the SMTP accept and the outbox update ---------------------------------

def test_crash_right_after_the_smtp_accept_sends_nothing_twice(world, bot):
    killed = []

    def kill_the_bot(envelope):  # in LocalSmtp, after the accept, before the 250 goes out
        if not killed and any(r.endswith("@" + CLIENTS) for r in envelope.rcpt_tos):
            killed.append(header(envelope, "Message-ID"))
            os.kill(bot.proc.pid, signal.SIGKILL)

    world.smtp.on_accept = kill_the_bot
    bot.start().wait_started()
    world.append("worldline", client_mail(1))
    bot.wait_for(lambda: bot.proc.poll() is not None, timeout=30, what="the bot to be killed")
    world.smtp.on_accept = None
    with world.session() as s:
        row = s.exec(select(OutboxMail)).one()
    assert (f"<{row.message_id}>", row.state) == (killed[0], "handed")  # handed over, no reply seen
    assert folder_ids(world) == {}  # it died before its copy went to the sent folder
    bot.start().wait_started()
    world.append("worldline", client_mail(2))
    bot.wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=30, what="the next answer")
    bot.wait_settled()
    bot.stop()
    assert_all_once(world, [mid(1), mid(2)], bot.tail())
    with world.session() as s:
        row = s.get(OutboxMail, row.id)
    assert row.state == "sent" and "counted as sent" in row.last_error


# --- 8. mail loops: two bots, and auto-responders ---------------------------------------------

def test_two_bots_answering_each_other_stop(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch):
    a = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch, "a",
              "ecom-belgium@worldline-a.localhost", "epayment@bosa-a.localhost")
    b = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch, "b",
              "ecom-belgium@worldline-b.localhost", "epayment@bosa-b.localhost")
    try:
        a.start()
        b.start()
        # Each bot's address writes to the other bot, as a client would: each answers, and the
        # answers (Auto-Submitted) are not answered.
        for n, (src, dst) in enumerate(((a, b), (b, a))):
            raw = Mail(brussels(2027, 3, 1, 9), src.addresses["worldline"], [dst.addresses["worldline"]],
                       f"BOSA M1036 - Bon de commande – Projet {n}", "Bonjour, voici notre demande.",
                       message_id=f"<kick{n}@loop.localhost>").to_bytes()
            dst.append("worldline", raw)

        def between():
            bots = {w.addresses["worldline"]: name for name, w in (("a", a), ("b", b))}
            return collections.Counter((bots.get(e.mail_from), bots.get(r)) for e in local_smtp.envelopes
                                       for r in e.rcpt_tos if e.accepted and r in bots)

        wait_for(lambda: sum(between().values()) >= 2, timeout=20, what="the first answers")

        def both_settled():  # a message between them during the look means looking again
            received = len(local_smtp.envelopes)
            return a.settled() and b.settled() and len(local_smtp.envelopes) == received

        wait_for(both_settled, timeout=30, what="both bots to have nothing left to do", interval=0.1)
        assert between() == {("a", "b"): 1, ("b", "a"): 1}
        for w in (a, b):
            with w.session() as s:
                reasons = s.exec(select(Decision.reason).where(Decision.answered == False)).all()  # noqa: E712
            assert any(r.startswith("auto_reply: Auto-Submitted") for r in reasons), reasons
    finally:
        a.stop()
        b.stop()


def auto_responder(world, tag: str, prefix: str, text: str, headers: dict | None = None):
    """A client's responder answering, at once, every mail the bot sends it: `prefix` + the
    bot's subject (without its "RE: "), `text`, `headers`. Returns the replies, as they go, and
    a function true when every mail to a client so far has its reply in the bot's inbox."""
    replies: list[bytes] = []
    delivered: list[bytes] = []

    def respond(envelope):
        if not any(r.endswith("@" + CLIENTS) for r in envelope.rcpt_tos):
            return
        got = _headers(envelope.data)
        reply = Mail(brussels(2027, 3, 1, 9), str(got["To"]), [WL], prefix + str(got["Subject"]).removeprefix("RE: "),
                     text, message_id=f"<{tag}{len(replies)}@{CLIENTS}>", in_reply_to=str(got["Message-ID"]),
                     headers=headers or {}).to_bytes()
        replies.append(reply)

        def deliver():
            world.append("worldline", reply)
            delivered.append(reply)

        threading.Thread(target=deliver, daemon=True).start()

    def all_delivered() -> bool:
        return len(delivered) == sum(answer_counts(world).values())

    world.smtp.on_accept = respond
    return replies, all_delivered


@pytest.mark.parametrize("auto_submitted", [False, True], ids=["plain-reply", "auto-submitted"])
def test_auto_responder_loop_stops(world, auto_submitted):
    """A client's auto-responder answers every mail it gets, at once, with the bot's subject
    (a plain reply as a naive responder writes it, or marked Auto-Submitted)."""
    replies, delivered = auto_responder(world, "auto", "", "Je suis absente, je reviens lundi.",
                                        {"Auto-Submitted": "auto-replied"} if auto_submitted else {})
    world.start()
    world.append("worldline", client_mail(1))
    wait_for(lambda: replies, timeout=20, what="the first answer")
    world.wait_settled(also=delivered)
    answers, responses = sum(answer_counts(world).values()), len(replies)
    assert (answers, responses) == (1, 1)  # one answer, one auto-reply, and no more
    assert unfinished(world) == 0
    with world.session() as s:
        reasons = s.exec(select(Decision.reason).join(Message, Message.id == Decision.message_pk)
                         .where(Message.message_id == f"auto0@{CLIENTS}")).all()
    # Marked: never answered (RFC 3834). Unmarked, its text tells an out-of-office.
    text = "auto_reply: the text looks like an out-of-office (fr): 'je suis absente'"
    assert reasons == ["auto_reply: Auto-Submitted: auto-replied" if auto_submitted else text]


NAIVE = {
    # RE: the bot's subject and an acknowledgement the rules know: an auto_reply by its text
    "known-text": ("RE: ", "Thank you for your message, we will answer shortly.",
                   "auto_reply: the text looks like an automatic acknowledgement (en): 'we will answer shortly'"),
    # the bot's subject as it came (the process's, so it reads as the client announcing the form
    # again) and a text no rule knows: a reply to the bot's answer with nothing new, at once
    "unknown-text": ("", "Votre courrier a été transmis au service concerné.",
                     ("loop: a reply to the bot's form_missing answer {s} after it, with no attachment: "
                      "a program's, not answered again")),
}


@pytest.mark.parametrize("variant", sorted(NAIVE))
def test_naive_auto_responder_stops_after_one_answer(world, variant):
    """A responder that sets no Auto-Submitted, X-Autoreply or Precedence answers every mail at
    once. The daily limits are raised out of the way: what stops the loop is the bot knowing the
    reply for what it is, not a limit."""
    prefix, text, expected = NAIVE[variant]
    world.configure(answers={"per_purpose_per_day": 100, "per_address_per_day": 100})
    replies, delivered = auto_responder(world, "naive", prefix, text)
    world.start()
    world.append("worldline", client_mail(1))
    wait_for(lambda: replies, timeout=20, what="the first answer")
    wait_for(lambda: world.count(Message, Message.message_id == f"naive0@{CLIENTS}", Message.status == "processed"),
             timeout=20, what="the auto-reply to be read")
    world.wait_settled(also=delivered)
    answers, responses = sum(answer_counts(world).values()), len(replies)
    assert (answers, responses) == (1, 1)  # counted at the SMTP server
    assert unfinished(world) == 0
    with world.session() as s:
        kind = s.exec(select(Message.kind).where(Message.message_id == f"naive0@{CLIENTS}")).one()
        reasons = s.exec(select(Decision.reason).join(Message, Message.id == Decision.message_pk)
                         .where(Message.message_id == f"naive0@{CLIENTS}")).all()
    assert kind == ("auto_reply" if variant == "known-text" else "submission")
    [reason] = reasons
    pattern = re.escape(expected).replace(re.escape("{s}"), r"\d+ s")
    assert re.fullmatch(pattern, reason), reason


# --- 9. the database locked, or full ---------------------------------------------------------

def recording(engine) -> threading.Event:
    """Set once the bot's engine starts to record a mail (its INSERT INTO message)."""
    started = threading.Event()

    def look(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO MESSAGE"):
            started.set()

    event.listen(engine, "before_cursor_execute", look)
    return started


def test_database_locked_for_a_few_seconds(world):
    world.start()
    with sqlite3.connect(world.settings.database.url.removeprefix("sqlite:///"), timeout=10) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        trying = recording(world.bot.engine)
        for n in (1, 2):
            world.append("worldline", client_mail(n))
        wait_for(trying.is_set, what="the bot to record a mail")  # it waits on the lock (busy timeout 10 s)
        assert answer_counts(world) == {}
        locker.rollback()
    wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=20,
             what="the mail after the lock")
    world.wait_settled()
    assert_all_once(world, [mid(1), mid(2)])


def test_database_locked_beyond_the_busy_timeout(world, monkeypatch, caplog):
    from mailbot.store import db

    pragmas = db._sqlite_pragmas

    def short_wait(connection, record):  # the bot gives up on a lock after 0.2 s instead of 10 s
        pragmas(connection, record)
        connection.execute("PRAGMA busy_timeout=200")

    monkeypatch.setattr(db, "_sqlite_pragmas", short_wait)
    world.start()
    world.smtp.stop()  # the outbox sender retries its answer meanwhile: it meets the lock too
    world.append("worldline", client_mail(1))
    wait_for(lambda: world.count(OutboxMail, OutboxMail.attempts >= 1), what="a first send to fail")
    def sender_failed():
        return sum(r.name == "mailbot.smtp" and r.getMessage() == "database error" for r in caplog.records)

    with sqlite3.connect(world.settings.database.url.removeprefix("sqlite:///"), timeout=10) as locker:
        locker.execute("BEGIN EXCLUSIVE")
        before = sender_failed()
        world.append("worldline", client_mail(2))
        wait_for(lambda: any(r.getMessage() == "not recorded" for r in caplog.records), what="a write to fail")
        # the sender, retrying every second, meets the lock too
        wait_for(lambda: sender_failed() > before, what="the sender to meet the lock")
        locker.rollback()
    world.smtp.start()
    wait_for(lambda: len(answer_counts(world)) == 2 and unfinished(world) == 0, timeout=30,
             what="the mail after the lock")
    world.wait_settled()
    assert_all_once(world, [mid(n) for n in (1, 2)])


def disk_full(engine) -> threading.Event:
    """The disk full for the bot's connections while the returned event is set (set at once):
    at every checkout, no page beyond the database's current size."""
    full = threading.Event()

    def cap(dbapi_connection, record, proxy):
        cursor = dbapi_connection.cursor()
        if full.is_set():
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        else:
            cursor.execute("PRAGMA max_page_count = 1073741823")
        cursor.close()

    event.listen(engine, "checkout", cap)
    full.set()
    return full


def test_database_full_for_a_moment(world, caplog):
    world.start()
    full = disk_full(world.bot.engine)
    for n in (1, 2, 3):
        world.append("worldline", client_mail(n, form=n == 1))
    # full for a moment: the bot fails to record a mail, and again when it tries again
    wait_for(lambda: sum(r.getMessage() == "not recorded" for r in caplog.records) >= 2, timeout=20,
             what="a write to fail twice")
    full.clear()
    wait_for(lambda: len(answer_counts(world)) == 3 and unfinished(world) == 0, timeout=30,
             what="the mail once there is room")
    world.wait_settled()
    assert_all_once(world, [mid(n) for n in (1, 2, 3)])


def test_watchdog_goes_on_after_a_database_failure(world, caplog):
    """The watchdog's write fails (the disk full): it logs, waits and looks again; its note on the
    silent folder goes out once there is room."""
    world.configure(daemon={"watchdog_minutes": 0.1, "idle_minutes": 0.03})  # looks every 3 s; watchers talk every 2 s
    world.start()
    def failed():
        return [r for r in caplog.records if r.name == "mailbot.daemon" and r.getMessage() == "database error"]

    def notes():
        with world.session() as s:
            return [(json.loads(o.detail)["mailbox"], json.loads(o.detail)["down"], o.state)
                    for o in s.exec(select(OutboxMail).where(OutboxMail.purpose == "watchdog"))]

    full = disk_full(world.bot.engine)
    # A folder silent for an hour: the watchdog's note on it (with its long error) needs room.
    with world.session() as s:
        s.add(FolderState(mailbox="bosa", folder="Archive", last_contact=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
                          last_error="ConnectionRefusedError: " + "refused " * 500))
        s.commit()
    wait_for(failed, timeout=20, what="the watchdog's write to fail")
    wait_for(lambda: len(failed()) >= 2, timeout=20, what="the watchdog to try again, and fail again")
    assert notes() == []
    assert all(getattr(r, "task", None) == "watchdog" and "full" in r.reason for r in failed())
    full.clear()
    wait_for(lambda: notes() == [("bosa", True, "sent")], timeout=20, what="the watchdog's note once there is room")
    assert [purpose(e) for e in world.answers(BOSA)] == ["watchdog"]
