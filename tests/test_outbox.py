"""The outbox sender's connections, against the session Dovecot and a LocalSmtp on 127.0.0.1:
one SMTP connection and one IMAP login for a run of answers, a dropped connection replaced
without a failed attempt, and a Sent copy the server did not take appended later, once."""

import collections
import email.parser
import email.policy
import threading

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from mailworld import BOSA, WL, World, bot_log, local_smtp, wait_for, world  # noqa: F401 - fixtures
from sqlmodel import col, select

from mailbot.season import Mail, brussels
from mailbot.status import render_status, status
from mailbot.store.models import OutboxMail
from mailbot.transport import sandbox
from mailbot.transport.imap import ImapFolder

CLIENTS = "sambreville.be"


@pytest.fixture
def peers(monkeypatch):
    """The client end (host, port) of the SMTP connection each message came over, in order."""
    seen = []
    handle_data = sandbox._Handler.handle_DATA

    async def counted(self, server, session, envelope):
        seen.append(session.peer)
        return await handle_data(self, server, session, envelope)

    monkeypatch.setattr(sandbox._Handler, "handle_DATA", counted)
    return seen


@pytest.fixture
def imap_calls(monkeypatch):
    """Per ImapFolder object: its logins and APPENDs (only the sender's sent folder appends)."""
    calls = collections.defaultdict(collections.Counter)
    connect, append = ImapFolder.connect, ImapFolder.append

    def counted_connect(self):
        calls[id(self)]["login"] += 1
        return connect(self)

    def counted_append(self, raw):
        calls[id(self)]["append"] += 1
        return append(self, raw)

    monkeypatch.setattr(ImapFolder, "connect", counted_connect)
    monkeypatch.setattr(ImapFolder, "append", counted_append)
    return calls


def client_mail(n: int) -> bytes:
    """Client n announces its order form (answered form_missing)."""
    return Mail(brussels(2027, 3, 1, 9), f"client{n}@{CLIENTS}", [WL], f"BOSA M1036 - Bon de commande – Projet {n}",
                "Bonjour, voici notre demande.", cc=[BOSA], message_id=f"<c{n}@{CLIENTS}>").to_bytes()


def header(data: bytes, name: str) -> str:
    return str(email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(data)[name])


def answers(world) -> collections.Counter:
    """In-Reply-To of every answer the SMTP server accepted for a client."""
    return collections.Counter(header(e.data, "In-Reply-To") for e in world.smtp.envelopes
                               if e.accepted and any(r.endswith("@" + CLIENTS) for r in e.rcpt_tos))


def sent_folder(world) -> collections.Counter:
    """Message-IDs in the bot's Sent folder, with how often each is there."""
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users["worldline"])
        client.select_folder("Sent", readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
    return collections.Counter(header(d[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"], "Message-ID").strip("<>")
                               for d in data.values())


def outbox(world) -> list[OutboxMail]:
    with world.session() as s:
        return list(s.exec(select(OutboxMail).order_by(OutboxMail.id)))


def test_pending_answers_go_over_one_smtp_connection_and_one_imap_login(world, peers, imap_calls):
    world.start()
    world.smtp.stop()  # the answers pile up in the outbox
    for n in range(6):
        world.append("worldline", client_mail(n))
    wait_for(lambda: world.count(OutboxMail, col(OutboxMail.purpose) == "form_missing") == 6, timeout=30,
             what="six answers in the outbox")
    world.smtp.start()
    wait_for(lambda: len(answers(world)) == 6 and world.count(OutboxMail, OutboxMail.state != "sent") == 0,
             timeout=30, what="every answer sent")
    assert answers(world) == {f"<c{n}@{CLIENTS}>": 1 for n in range(6)}
    assert len(peers) == len(world.smtp.envelopes) >= 6 and len(set(peers)) == 1  # one connection for all
    rows = outbox(world)
    wait_for(lambda: set(sent_folder(world)) == {r.message_id for r in rows}, what="the Sent copies")
    assert set(sent_folder(world).values()) == {1}
    appending = [c for c in imap_calls.values() if c["append"]]
    assert len(appending) == 1 and appending[0] == {"login": 1, "append": len(rows)}  # one login for the copies


def test_a_dropped_smtp_connection_is_replaced_without_a_failed_attempt(world, peers, monkeypatch):
    drop = threading.Event()

    async def handle_MAIL(self, server, session, envelope, address, options):  # aiosmtpd's hook
        if drop.is_set():
            drop.clear()
            server.transport.close()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    # aiosmtpd takes a connection's hooks when it opens: set before the first one.
    monkeypatch.setattr(sandbox._Handler, "handle_MAIL", handle_MAIL, raising=False)
    world.configure(daemon={"smtp_idle_seconds": 60})  # only a drop ends the connection
    world.start()
    world.append("worldline", client_mail(1))
    wait_for(lambda: len(answers(world)) == 1, timeout=20, what="the first answer")

    # The server closes the connection at the next MAIL FROM: the client learns it only there.
    drop.set()
    world.append("worldline", client_mail(2))
    wait_for(lambda: len(answers(world)) == 2, timeout=20, what="the answer after the drop at MAIL FROM")
    assert not drop.is_set()

    # The server goes away and comes back between two mails (a restart): the kept connection is dead.
    world.smtp.stop()
    world.smtp.start()
    world.append("worldline", client_mail(3))
    wait_for(lambda: len(answers(world)) == 3 and world.count(OutboxMail, OutboxMail.state != "sent") == 0,
             timeout=20, what="the answer after the restart")
    world.wait_settled()  # a mail sent twice would have come by then
    assert answers(world) == {f"<c{n}@{CLIENTS}>": 1 for n in (1, 2, 3)}
    assert all(r.attempts == 0 and r.state == "sent" for r in outbox(world))  # no attempt counted as failed
    ordered = list(dict.fromkeys(peers))
    assert len(ordered) == 3  # the first connection, one after the drop, one after the restart


def test_no_answer_after_the_final_dot_counts_as_sent_never_twice(world, monkeypatch):
    """The server takes the whole mail, then the connection dies before its reply to the dot:
    the server may have delivered it, so it is not sent again; its Sent copy is still added."""
    handle_data = sandbox._Handler.handle_DATA
    cut = threading.Event()
    cut.set()

    async def silent_after_dot(self, server, session, envelope):
        result = await handle_data(self, server, session, envelope)  # delivered
        if cut.is_set():
            cut.clear()
            server.transport.abort()  # no "250" for the dot
        return result

    monkeypatch.setattr(sandbox._Handler, "handle_DATA", silent_after_dot)
    world.start()
    world.append("worldline", client_mail(1))
    wait_for(lambda: world.count(OutboxMail, OutboxMail.state == "sent") == 1, timeout=20, what="the answer")
    wait_for(lambda: sent_folder(world) and not world.count(OutboxMail, OutboxMail.copy_owed == True),  # noqa: E712
             timeout=20, what="its Sent copy")
    world.wait_settled()  # a mail sent twice would have come by then
    row, = outbox(world)
    assert "no answer after the final dot" in row.last_error
    assert answers(world) == {f"<c1@{CLIENTS}>": 1}
    assert sent_folder(world) == {row.message_id: 1}
    assert not cut.is_set()  # the cut did happen


def test_a_failed_sent_copy_is_appended_later_exactly_once(world, monkeypatch):
    """The Sent folder's server fails: the first APPEND lands but its answer is lost, the next
    ones are refused. Each copy is owed, kept across a restart, and added once when it works."""
    failing, landed = threading.Event(), []
    failing.set()
    append = ImapFolder.append

    def flaky(self, raw):
        if failing.is_set() and self.folder == "Sent" and self.cfg.user == world.users["worldline"][0]:
            if not landed:
                landed.append(header(raw, "Message-ID").strip("<>"))
                append(self, raw)
                raise IMAPClientAbortError("socket error: EOF")  # there, but the bot cannot know
            raise IMAPClientError("APPEND command error: NO [b'[SERVERBUG] Internal error']")
        return append(self, raw)

    monkeypatch.setattr(ImapFolder, "append", flaky)
    world.start()
    world.append("worldline", client_mail(1))
    wait_for(lambda: len(answers(world)) == 1, timeout=20, what="the first answer")
    world.append("worldline", client_mail(2))
    wait_for(lambda: len(answers(world)) == 2 and world.count(OutboxMail, OutboxMail.state != "sent") == 0,
             timeout=20, what="the second answer")
    first, second = outbox(world)
    assert landed == [first.message_id]
    # The first copy is found on the first retry (and not appended again); the second stays owed.
    wait_for(lambda: [r.copy_owed for r in outbox(world)] == [False, True], timeout=15, what="the first copy found")
    with world.session() as s:
        report = status(s.get_bind(), world.settings)
    assert report["sent_copies_owed"] == 1 and "their copy not yet in the Sent folder: 1" in render_status(report)
    assert sent_folder(world) == {first.message_id: 1}

    world.stop()  # still owed after a restart
    failing.clear()
    world.start()
    wait_for(lambda: world.count(OutboxMail, OutboxMail.copy_owed == True) == 0, timeout=20,  # noqa: E712
             what="the owed copy")
    world.wait_settled()
    assert sent_folder(world) == {first.message_id: 1, second.message_id: 1}
    assert answers(world) == {f"<c{n}@{CLIENTS}>": 1 for n in (1, 2)}


def test_answers_carry_their_language_on_the_wire(world):
    """Content-Language, in the bytes the SMTP server took (set_content() clears Content-* headers)."""
    world.start()
    world.append("worldline", client_mail(1))
    world.append("worldline", Mail(brussels(2027, 3, 1, 9), f"klant@{CLIENTS}", [WL], "BOSA M1036 - Bestelbon – Project",
                                   "Goedendag, hierbij onze aanvraag voor het bestelformulier.", cc=[BOSA],
                                   message_id=f"<nl@{CLIENTS}>").to_bytes())
    wait_for(lambda: len(answers(world)) == 2, timeout=30, what="both answers sent")
    by_reply = {header(e.data, "In-Reply-To"): e.data for e in world.smtp.envelopes if e.accepted}
    assert header(by_reply[f"<c1@{CLIENTS}>"], "Content-Language") == "fr"
    assert header(by_reply[f"<nl@{CLIENTS}>"], "Content-Language") == "nl"
