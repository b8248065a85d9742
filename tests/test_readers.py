"""Mail read in a reader process (mailbot/readers.py) and taken from IMAP in batches: the same
understanding as reading in-process, no attachment read on the database thread, a dying reader
costs no mail, a mail that kills the reader twice or goes past its time or memory bound is set
aside with its reason, and a PDF bomb sent to the daemon costs it nothing."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pdfs
import pytest
from mailworld import WL, World, form_mail, local_smtp, wait_for  # noqa: F401 - local_smtp: a fixture
from sqlmodel import Session, select

from mailbot.config import Imap, load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.mail.documents import load_document_rules
from mailbot.pipeline import handle
from mailbot.readers import Read, Readers, Unreadable, read_mail
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import Mail, brussels, season
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import AttachmentRecord, Message, OutboxMail
from mailbot.transport import imap
from mailbot.transport.imap import ImapFolder

SETTINGS = load_settings(SANDBOX_CONFIG)
RULES = (load_rules(SETTINGS.files.form_rules), load_document_rules(SETTINGS.files.document_rules))


def crash_on_poison(raw: bytes) -> Read:
    """A reader that dies (as on a crash in a C parser), never ends, or wants all the memory
    there is, on one kind of mail."""
    if b"POISON" in raw:
        os._exit(3)
    if b"STUCK" in raw:
        time.sleep(3600)
    if b"HOG" in raw:
        hog = [bytearray(100 * 1024 * 1024) for _ in range(20)]  # 2 GB
        return hog  # never reached: the reader's address space is bounded
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


def test_the_pipeline_reads_no_attachment_of_a_mail_read_in_the_reader(tmp_path, monkeypatch):
    """What the daemon's database thread does with a mail read in the reader process: no
    parsing, no form check, no PDF text (those are where hostile input strikes)."""
    ctx = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/db.sqlite"), max_attempts=1)
    mails = season(SETTINGS)
    reads = [read_mail(m.to_bytes(), ctx.form_rules, ctx.document_rules) for m in mails]
    assert any(r.looked.form_checks for r in reads) and any(r.looked.pdf_texts for r in reads)

    def refused(*args, **kwargs):
        raise AssertionError("an attachment read on the database thread")

    for name in ("mailbot.mail.documents.check_form", "mailbot.mail.documents.pdf_text", "mailbot.pipeline.parse_mail"):
        monkeypatch.setattr(name, refused)
    for i, (mail, read) in enumerate(zip(mails, reads, strict=True)):
        outcome = handle(mail.to_bytes(), Seen("worldline", "INBOX", 1, i + 1), mail.at, ctx, read)
        assert outcome.failed is None


@pytest.mark.integration  # reader processes
def test_a_dying_reader_costs_no_mail_and_a_mail_that_kills_it_twice_is_set_aside(tmp_path, monkeypatch):
    monkeypatch.setattr("mailbot.readers._read", crash_on_poison)  # pickled by name: the worker looks it up
    mails = [m.to_bytes() for m in season(SETTINGS)[:4]]
    poison = b"X-Test: POISON\r\n" + mails[1]
    batch = [mails[0], poison, mails[2], mails[3]]

    async def read_all():
        readers = Readers(*RULES, 1)
        try:
            futures = [readers.submit(raw) for raw in batch]
            return [await readers.result(f, raw) for f, raw in zip(futures, batch, strict=True)]
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


@pytest.mark.integration
def test_a_reader_stuck_on_a_mail_is_stopped_and_the_mail_set_aside(monkeypatch):
    monkeypatch.setattr("mailbot.readers._read", crash_on_poison)
    mails = [m.to_bytes() for m in season(SETTINGS)[:3]]
    batch = [mails[0], b"X-Test: STUCK\r\n" + mails[1], mails[2]]

    async def read_all():
        readers = Readers(*RULES, 1, timeout=2)
        try:
            futures = [readers.submit(raw) for raw in batch]
            return [await readers.result(f, raw) for f, raw in zip(futures, batch, strict=True)]
        finally:
            readers.close()

    started = time.monotonic()
    results = asyncio.run(read_all())
    assert isinstance(results[0], Read) and isinstance(results[2], Read)
    assert results[1] == Unreadable("reading the mail took more than 2 s")  # at once: no second try
    assert time.monotonic() - started < 30  # a timeout, not an hour


@pytest.mark.integration
def test_a_mail_past_the_memory_bound_is_set_aside_and_the_reader_replaced(monkeypatch):
    """The reader's address space is bounded (RLIMIT_AS): the allocation fails in the worker,
    not on the machine; the mail is Unreadable with the reason, the worker replaced, and the
    mails after it are read."""
    monkeypatch.setattr("mailbot.readers._read", crash_on_poison)
    mails = [m.to_bytes() for m in season(SETTINGS)[:3]]
    batch = [mails[0], b"X-Test: HOG\r\n" + mails[1], mails[2]]

    async def read_all():
        readers = Readers(*RULES, 1, memory_mb=400)
        try:
            readers.start()
            first = await readers.result(readers.submit(batch[0]), batch[0])
            before = readers.pool
            rest = [readers.submit(raw) for raw in batch[1:]]
            results = [first] + [await readers.result(f, raw) for f, raw in zip(rest, batch[1:], strict=True)]
            return results, before, readers.pool
        finally:
            readers.close()

    results, before, after = asyncio.run(read_all())
    assert isinstance(results[0], Read) and isinstance(results[2], Read)
    assert results[1] == Unreadable("reading the mail needed more than the 400 MB the reader process may use", spent=True)
    assert after is not before  # new workers for the next mails


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


@pytest.mark.integration
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


@pytest.mark.integration
def test_the_reader_process_is_started_warm_and_kept():
    """A mail alone pays no process start: the worker is up before the first mail and stays."""
    import multiprocessing

    readers = Readers(*RULES, 1)
    try:
        readers.start()
        wait_for(lambda: multiprocessing.active_children(), what="the reader process")
        [worker] = multiprocessing.active_children()
        raw = season(SETTINGS)[0].to_bytes()
        for _ in range(3):
            assert isinstance(asyncio.run(readers.result(readers.submit(raw), raw)), Read)
        assert [p.pid for p in multiprocessing.active_children()] == [worker.pid]
    finally:
        readers.close()


@pytest.mark.integration
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


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    yield w
    w.stop()


def rss_kb() -> int:
    """This process's resident memory: the daemon under test runs in one of its threads."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0])


def test_a_pdf_bomb_sent_alone_to_the_daemon_costs_it_nothing(world, monkeypatch):
    """Issue 10's attack on the real daemon and Dovecot: a mail alone carrying a ~120 KB PDF
    that inflates to 30 MB of text (before: read on the database thread, 100 s at 460 MB). It
    is read in the reader process, recorded with the reason the PDF was not read, and the next
    mail is answered; the daemon's own memory does not grow by tens of MB."""
    def refused(*args, **kwargs):
        raise AssertionError("PDF text read in the daemon's own process")

    monkeypatch.setattr("mailbot.mail.documents.pdf_text", refused)  # here, not in the spawned reader
    world.start()
    world.append("worldline", form_mail(1).to_bytes())  # a first mail: the daemon's own code warm
    wait_for(lambda: len(world.answers()) == 1, timeout=60, what="the first answer")
    before = rss_kb()
    bomb = Mail(brussels(2027, 3, 1, 10), "jan.peeters@gent.be", [WL], "Documents", "Zie bijlage.",
                attachments=[("document.pdf", pdfs.bomb_pdf(30), "application/pdf")], message_id="<bomb@gent.be>")
    world.append("worldline", bomb.to_bytes())
    world.append("worldline", form_mail(2, project="Piscine").to_bytes())
    wait_for(lambda: len(world.answers()) == 2, timeout=60, what="the answer to the mail after the bomb")
    grown = rss_kb() - before
    print(f"daemon VmRSS {before / 1024:.1f} MB before the bomb, grown by {grown / 1024:.1f} MB after it")
    with world.session() as s:
        msg = s.exec(select(Message).where(Message.message_id == "bomb@gent.be")).one()
        [att] = s.exec(select(AttachmentRecord).where(AttachmentRecord.message_pk == msg.id)).all()
    assert (msg.status, msg.attempts, msg.status_reason) == ("processed", 0, "")  # no failure, no quarantine
    assert att.filename == "document.pdf" and att.reason.startswith("a PDF past the reading bounds (2 MB inflated")
    assert grown < 20 * 1024, f"the daemon grew by {grown / 1024:.0f} MB"
