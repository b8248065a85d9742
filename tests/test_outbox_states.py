"""The outbox's state machine (mailbot/outbox.py) on a migrated SQLite database: the stored
values, the moves it allows and refuses, and the queries the sender, status and digest use."""

import datetime as dt

import pytest
from sqlmodel import Session

from mailbot import outbox
from mailbot.answers.render import Rendered
from mailbot.errors import OutboxStateError
from mailbot.outbox import TRANSITIONS, Draft, Limits, OutboxState, enqueue
from mailbot.store.db import open_database
from mailbot.store.models import OutboxMail

NOW = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)
WL = "ecom-belgium@worldline.localhost"
S = OutboxState


def draft(n: int, client_mail: bool = True) -> Draft:
    return Draft("form_missing", WL, (f"client{n}@sambreville.be",), (), Rendered("Objet", "texte", "", "fr"),
                 f"Projet {n}", client_mail=client_mail)


@pytest.fixture
def engine(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path}/outbox.sqlite")
    yield engine
    engine.dispose()


def queue(engine, *drafts: Draft, shadow: bool = False) -> list[int]:
    with Session(engine) as session:
        rows = [enqueue(session, d, NOW, Limits(), shadow=shadow) for d in drafts]
        session.commit()
        return [r.id for r in rows]


def state(engine, row_id: int) -> str:
    with Session(engine) as session:
        return session.get(OutboxMail, row_id).state


def test_the_states_are_stored_as_the_strings_they_always_were():
    assert {s.value for s in OutboxState} == {"pending", "sending", "handed", "sent", "failed", "shadow"}
    assert OutboxState("handed") is S.HANDED and S.SENT == "sent"  # rows read back compare as before


def test_the_transitions():
    assert set(TRANSITIONS) == set(OutboxState)
    assert {s for s, targets in TRANSITIONS.items() if not targets} == {S.SENT, S.FAILED, S.SHADOW}
    assert TRANSITIONS[S.PENDING] == {S.SENDING}  # only the sender's claim takes a mail
    assert S.PENDING not in TRANSITIONS[S.SENT] and S.SENT not in TRANSITIONS[S.PENDING]


def test_enqueue_writes_pending_or_shadow(engine):
    pending, staff = queue(engine, draft(1), draft(2, client_mail=False), shadow=False)
    shadowed, staff_in_shadow = queue(engine, draft(3), draft(4, client_mail=False), shadow=True)
    assert [state(engine, i) for i in (pending, staff, shadowed, staff_in_shadow)] == \
        ["pending", "pending", "shadow", "pending"]  # staff notes go out even in shadow mode
    with Session(engine) as session:
        assert [r.id for r in outbox.shadow_since(session, NOW)] == [shadowed]
        assert outbox.shadow_since(session, NOW + dt.timedelta(seconds=1)) == []


def test_a_mail_goes_pending_sending_handed_sent(engine):
    first, second = queue(engine, draft(1), draft(2))
    row = outbox.claim(engine, NOW)
    assert (row.id, row.state) == (first, "sending") and state(engine, first) == "sending"
    with engine.connect() as connection:
        outbox.mark_handed(connection, first)
        connection.commit()
    outbox.move(engine, first, S.SENT, "", NOW, copy_owed=True)
    with Session(engine) as session:
        row = session.get(OutboxMail, first)
        assert (row.state, row.sent_at, row.copy_owed) == ("sent", NOW, True)
        assert outbox.counts(session) == {"sent": 1, "pending": 1}
        assert outbox.unsent_count(session) == 1 and outbox.copies_owed_count(session) == 1
    assert [r.id for r in outbox.owing_copies(engine)] == [first]
    outbox.copy_added(engine, first)
    assert outbox.owing_copies(engine) == []
    assert [r.id for r in outbox.in_state(engine, S.PENDING)] == [second]


def test_claim_waits_for_not_before(engine):
    (row_id,) = queue(engine, draft(1))
    outbox.claim(engine, NOW)
    outbox.move(engine, row_id, S.PENDING, "451 later", NOW, attempts=1, not_before=NOW + dt.timedelta(seconds=30))
    assert outbox.claim(engine, NOW + dt.timedelta(seconds=29)) is None
    row = outbox.claim(engine, NOW + dt.timedelta(seconds=30))
    assert (row.id, row.state, row.attempts, row.last_error, row.not_before) == (row_id, "sending", 1, "", None)


@pytest.mark.parametrize("source, target", [(S.PENDING, S.SENT), (S.PENDING, S.HANDED), (S.SENT, S.PENDING),
                                            (S.FAILED, S.PENDING), (S.SHADOW, S.SENDING)])
def test_a_move_outside_the_transitions_is_refused_and_changes_nothing(engine, source, target):
    (row_id,) = queue(engine, draft(1), shadow=source is S.SHADOW)
    if source in (S.SENT, S.FAILED):
        outbox.claim(engine, NOW)
        outbox.move(engine, row_id, source, "", NOW)
    with pytest.raises(OutboxStateError, match=f"{source} -> {target}"):
        outbox.move(engine, row_id, target, "oops", NOW)
    assert state(engine, row_id) == source


def test_only_a_mail_being_sent_can_be_handed_over(engine):
    (row_id,) = queue(engine, draft(1))
    with engine.connect() as connection, pytest.raises(OutboxStateError):
        outbox.mark_handed(connection, row_id)  # still pending: its dot must not be written
    assert state(engine, row_id) == "pending"
