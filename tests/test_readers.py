"""Mail read ahead in a reader process (mailbot/readers.py) and taken from IMAP in batches: the
same understanding as reading in-process, a dying reader costs no mail, and a mail that kills
the reader twice is set aside with its reason."""

import asyncio
import os
import signal
import subprocess
import sys
import time

from sqlmodel import Session, select

from mailbot.config import Imap, load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.mail.documents import load_document_rules
from mailbot.pipeline import handle
from mailbot.readers import Read, Readers, Unreadable, read_mail
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import season
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Message, OutboxMail
from mailbot.transport import imap
from mailbot.transport.imap import ImapFolder

SETTINGS = load_settings(SANDBOX_CONFIG)
RULES = (load_rules(SETTINGS.files.form_rules), load_document_rules(SETTINGS.files.document_rules))


def crash_on_poison(raw: bytes) -> Read:
    """A reader that dies (as on a memory bomb or a crash in a C parser) on one kind of mail."""
    if b"POISON" in raw:
        os._exit(3)
    if b"STUCK" in raw:
        time.sleep(3600)
    from mailbot.readers import _read
    return _read(raw)


def timeline(tmp_path, name, read_ahead: bool):
    ctx = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/{name}.sqlite"), max_attempts=1)
    out = []
    for i, mail in enumerate(season(SETTINGS)):
        raw = mail.to_bytes()
        read = read_mail(raw, ctx.form_rules, ctx.document_rules) if read_ahead else None
        outcome = handle(raw, Seen("worldline", "INBOX", 1, i + 1), mail.at, ctx, read)
        out.append((outcome.kind, outcome.dossier, outcome.understanding.reading.kinds
                    if outcome.understanding else None))
    with Session(ctx.engine) as s:
        answers = [(o.purpose, o.recipients, o.subject, o.body_text) for o in s.exec(select(OutboxMail))]
    return out, answers


def test_a_mail_read_ahead_is_understood_and_answered_as_one_read_in_process(tmp_path):
    ahead, answered_ahead = timeline(tmp_path, "ahead", read_ahead=True)
    inline, answered_inline = timeline(tmp_path, "inline", read_ahead=False)
    assert ahead == inline
    assert answered_ahead == answered_inline
    assert any(kinds and "order_form" in kinds for _, _, kinds in ahead)  # the forms were read ahead too


def test_a_dying_reader_costs_no_mail_and_a_mail_that_kills_it_twice_is_set_aside(tmp_path, monkeypatch):
    monkeypatch.setattr("mailbot.readers._read", crash_on_poison)  # pickled by name: the worker looks it up
    mails = [m.to_bytes() for m in season(SETTINGS)[:4]]
    poison = b"X-Test: POISON\r\n" + mails[1]
    batch = [mails[0], poison, mails[2], mails[3]]

    async def read_all():
        readers = Readers(*RULES, 1)
        try:
            futures = [readers.submit(raw) for raw in batch]
            return [await readers.result(f, raw) for f, raw in zip(futures, batch)]
        finally:
            readers.close()

    results = asyncio.run(read_all())
    assert isinstance(results[0], Read)
    assert isinstance(results[1], Unreadable) and "reader process" in results[1].reason
    # The mails after the poison were lost with the first worker: read again by the next one.
    assert all(isinstance(r, Read) for r in results[2:])

    ctx = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/p.sqlite"), max_attempts=3)
    outcome = handle(poison, Seen("worldline", "INBOX", 1, 2), season(SETTINGS)[1].at, ctx, results[1])
    assert outcome.quarantined == results[1].reason
    with Session(ctx.engine) as s:
        msg = s.exec(select(Message)).one()
    assert (msg.status, msg.status_reason) == ("quarantined", results[1].reason)


def test_a_reader_stuck_on_a_mail_is_stopped_and_the_mail_set_aside(monkeypatch):
    monkeypatch.setattr("mailbot.readers._read", crash_on_poison)
    monkeypatch.setattr("mailbot.readers.READ_TIMEOUT_SECONDS", 2)
    mails = [m.to_bytes() for m in season(SETTINGS)[:3]]
    batch = [mails[0], b"X-Test: STUCK\r\n" + mails[1], mails[2]]

    async def read_all():
        readers = Readers(*RULES, 1)
        try:
            futures = [readers.submit(raw) for raw in batch]
            return [await readers.result(f, raw) for f, raw in zip(futures, batch)], readers.pool
        finally:
            readers.close()

    started = time.monotonic()
    results, _ = asyncio.run(read_all())
    assert isinstance(results[0], Read) and isinstance(results[2], Read)
    assert isinstance(results[1], Unreadable) and "reader process" in results[1].reason
    assert time.monotonic() - started < 30  # two timeouts, not an hour


OWNER = """
import asyncio, multiprocessing, os, sys, time
from mailbot.config import load_settings
from mailbot.forms import load_rules
from mailbot.mail.documents import load_document_rules
from mailbot.readers import Readers
from mailbot.resources import SANDBOX_CONFIG

async def main():
    files = load_settings(SANDBOX_CONFIG).files
    readers = Readers(load_rules(files.form_rules), load_document_rules(files.document_rules), 1)
    raw = b"Subject: x\\r\\n\\r\\nbody\\r\\n"
    await readers.result(readers.submit(raw), raw)
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)  # the reader process
    time.sleep(3600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_reader_leaves_when_its_daemon_is_killed(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(owner.stdout.readline().split()[0])
        assert os.path.exists(f"/proc/{worker}")
        owner.send_signal(signal.SIGKILL)  # no shutdown: the worker is on its own
        owner.wait(10)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/proc/{worker}")
    finally:
        owner.kill()
        owner.wait(10)


def test_a_backlog_is_taken_in_batches_bounded_in_count_and_bytes(dovecot, make_imap_user, append, monkeypatch):
    user, password = make_imap_user()
    small, big = b"Subject: s\r\n\r\n" + b"x" * 1000 + b"\r\n", b"Subject: b\r\n\r\n" + b"y" * 300_000 + b"\r\n"
    for raw in [small] * 5 + [big] * 3 + [small] * 2:
        append(user, password, raw)
    monkeypatch.setattr(imap, "BATCH_MAILS", 4)
    monkeypatch.setattr(imap, "BATCH_BYTES", 500_000)
    cfg = Imap(host=dovecot.host, port=dovecot.port, user=user, security="plain")
    conn = ImapFolder(cfg, password, "INBOX")
    conn.connect()
    try:
        uids = conn.uids_after(0)
        batches = conn.batches(uids)
        fetched = conn.fetch(batches[0])
    finally:
        conn.close()
    assert [len(b) for b in batches] == [4, 2, 1, 3]  # 4 small; small + big; big alone; big + 2 small
    assert [u for b in batches for u in b] == uids
    assert list(fetched) == batches[0] and all(f.raw.startswith(b"Subject: s") for f in fetched.values())
    assert all(f.arrived is not None and f.arrived.tzinfo is not None for f in fetched.values())  # INTERNALDATE


def test_the_reader_process_starts_for_a_batch_and_stops_once_idle():
    off = Readers(*RULES, 0)
    assert off.submit(b"Subject: x\r\n\r\nbody\r\n") is None  # `daemon.readers = 0`: read in-process
    readers = Readers(*RULES, 1)
    try:
        assert readers.pool is None  # at rest: no process, no memory
        raw = season(SETTINGS)[0].to_bytes()
        assert isinstance(asyncio.run(readers.result(readers.submit(raw), raw)), Read)
        readers.close_if_idle(60)
        assert readers.pool is not None  # used a moment ago
        readers.close_if_idle(0)
        assert readers.pool is None
        assert isinstance(asyncio.run(readers.result(readers.submit(raw), raw)), Read)  # started again
    finally:
        readers.close()


def test_a_reader_killed_while_idle_is_replaced():
    """The worker dies between two batches (the OOM killer, say): the next mail is still read ahead."""
    import multiprocessing

    readers = Readers(*RULES, 1)
    raw = season(SETTINGS)[0].to_bytes()
    try:
        assert isinstance(asyncio.run(readers.result(readers.submit(raw), raw)), Read)
        workers = multiprocessing.active_children()
        assert len(workers) == 1
        os.kill(workers[0].pid, signal.SIGKILL)
        time.sleep(0.5)  # the pool notices
        assert isinstance(asyncio.run(readers.result(readers.submit(raw), raw)), Read)
        assert [p.pid for p in multiprocessing.active_children()] != [workers[0].pid]
    finally:
        readers.close()
