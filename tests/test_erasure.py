"""`mailbot forget`: an erasure request on a database filled by the real pipeline; the address
in any case or Unicode form; the addresses' normalisation and replacement (pure)."""

import json

import pytest
from privacy_world import (  # noqa: F401 - fixtures
    SETTINGS,
    ZOE,
    ZOE_NFD,
    db,
    found,
    mailbot,
    season_db,
    session_on,
    sql,
    texts,
    zoe_mail,
)
from sqlmodel import select

from mailbot.addresses import normalise_address, replace_in_stored
from mailbot.cli import main
from mailbot.context import Context
from mailbot.pipeline import handle
from mailbot.season import brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import (
    Contact,
    Dossier,
    Event,
    FormCheckRecord,
    Message,
    OutboxMail,
)

pytestmark = pytest.mark.integration  # servers or processes in every test


def test_forget_removes_an_address_everywhere_and_records_the_erasure(db):
    assert found(db, ["marie.dubois@sambreville.be", "Marie Dubois"])
    done = mailbot("forget", "MARIE.Dubois@SambreVille.BE", "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    number = done.stdout.split()[1]
    assert "EPAY-2027-0001" in done.stdout and "contact links" in done.stdout and "mail senders" in done.stdout
    assert found(db, ["marie.dubois@sambreville.be", "Marie Dubois"]) == []
    # The others stay: her colleague, the other clients.
    assert found(db, ["it-support@sambreville.be", "an.janssens@lier.be"]) == ["it-support@sambreville.be",
                                                                               "an.janssens@lier.be"]
    with session_on(db) as s:
        form = json.loads(s.exec(select(FormCheckRecord.values).where(FormCheckRecord.dossier_id == 1)).first())
        event = s.exec(select(Event).where(Event.kind == "address_erased")).one()
        reference = s.get(Dossier, event.dossier_id).reference
    # Her name and phone go with her address; the technical contact's stay.
    assert [form[f] for f in ("business_contact_email", "business_contact_name", "business_contact_phone")] == \
        ["[erased]"] * 3
    assert (form["technical_contact_name"], form["technical_contact_phone"]) == ("Koen Peeters", "+32475123456")
    assert event.detail.startswith(f"erasure {number}: ") and "@" not in event.detail
    assert reference == "EPAY-2027-0001"


def test_forget_finds_every_form_of_a_non_ascii_address(db):
    stored = "\n".join(texts(db))
    raw = "\n".join(r for (r,) in sql(db, "SELECT recipients FROM outbox"))
    assert "\\u0308" in raw  # the outbox keeps her NFD address JSON-escaped
    assert ZOE in stored
    # Upper case, the domain in punycode, composed characters: the same address.
    done = mailbot("forget", "ZOË.DUPRÉ@xn--exmple-gemeente-1kb.be", "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    assert "EPAY-2027-0003" in done.stdout
    assert found(db, [ZOE, "Zoë Dupré", "dupr"]) == []
    assert found(db, ["informatique@exämple-gemeente.be"])  # her colleague stays
    with session_on(db) as s:
        contacts = {c.email for c in s.exec(select(Contact).where(Contact.dossier_id == 3))}
        mail = s.exec(select(Message).where(Message.message_id == "zoe-1@mail.example.net")).one()
    assert contacts == {"informatique@exämple-gemeente.be", "finances@exämple-gemeente.be"}
    assert mail.sender is None and mail.key == "mid:zoe-1@mail.example.net"
    # The mail is still known: brought again (a backlog, another folder), it is not answered twice.
    ctx = Context.load(SETTINGS, open_database(f"sqlite:///{db}"), max_attempts=1)
    outcome = handle(zoe_mail(), Seen("worldline"), brussels(2027, 3, 1), ctx)
    ctx.engine.dispose()
    assert outcome.duplicate


def test_forget_dry_run_changes_nothing(db):
    before = texts(db)
    assert main(["forget", "an.janssens@lier.be", "--dry-run", "--db", f"sqlite:///{db}"]) == 0
    assert texts(db) == before


def test_forget_cancels_the_answers_not_sent_yet(db):
    sql(db, "UPDATE outbox SET state = 'pending' WHERE recipients LIKE '%an.janssens@lier.be%'")
    pending = sql(db, "SELECT count(*) FROM outbox WHERE state = 'pending'")[0][0]
    assert pending
    assert main(["forget", "An.Janssens@Lier.be", "--db", f"sqlite:///{db}"]) == 0
    with session_on(db) as s:
        rows = s.exec(select(OutboxMail).where(OutboxMail.last_error.like("cancelled: erasure %"))).all()
    assert len(rows) == pending and all(r.state == "failed" for r in rows)


@pytest.mark.parametrize("address, words", [("nobody", "is not an e-mail address"),
                                            ("ECOM-belgium@worldline.localhost", "is a watched mailbox")])
def test_forget_refuses_what_is_not_a_persons_address(db, capsys, address, words):
    assert main(["forget", address, "--db", f"sqlite:///{db}"]) == 2
    assert words in capsys.readouterr().err


def test_addresses_compare_normalised():
    assert normalise_address(" <Zoe\u0308.Dupre\u0301@EXÄMPLE-Gemeente.BE.> ") == ZOE
    assert normalise_address("zoë.dupré@xn--exmple-gemeente-1kb.be") == ZOE
    assert normalise_address("straße@example.de") != normalise_address("strasse@example.de")


def test_addresses_are_replaced_in_text_and_in_escaped_json():
    target = lambda a: normalise_address(a) == ZOE  # noqa: E731
    text, n = replace_in_stored(f"first_answer to {ZOE_NFD.upper()}, and a@b.be.", target, "[x]")
    assert (text, n) == ("first_answer to [x], and a@b.be.", 1)
    escaped = json.dumps([ZOE_NFD, "a@b.be"])
    assert replace_in_stored(escaped, target, "[x]") == (json.dumps(["[x]", "a@b.be"]), 1)
