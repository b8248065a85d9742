"""Where each watched folder stands (mailbot/store/folders.py): the mail let out of the quarantine
that a watcher takes again by its UID, and what becomes of it when the server no longer has it."""

import asyncio
import datetime as dt

from sqlmodel import Session

from mailbot.store.db import open_database
from mailbot.store.folders import FolderStateStore
from mailbot.store.models import FolderState, Message, Sighting

NOW = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)


async def run_db(fn, *args, **kwargs):
    return fn(*args, **kwargs)


WATCHED = (("worldline", "INBOX"), ("worldline", "Sent"), ("bosa", "INBOX"), ("bosa", "Sent"))


def released_in_both_inboxes(tmp_path, watched=WATCHED) -> tuple[FolderStateStore, int]:
    """A mail the client sent to both mailboxes (seen in both INBOXes), let out of the quarantine."""
    engine = open_database(f"sqlite:///{tmp_path}/f.sqlite")
    with Session(engine) as s:
        s.add(FolderState(mailbox="worldline", folder="INBOX", uidvalidity=7, last_uid=5))
        s.add(FolderState(mailbox="bosa", folder="INBOX", uidvalidity=9, last_uid=3))
        msg = Message(key="mid:c1@sambreville.be", content_hash="h", received_at=NOW, status="received")
        s.add(msg)
        s.flush()
        assert msg.id is not None
        s.add(Sighting(message_pk=msg.id, mailbox="worldline", folder="INBOX", uidvalidity=7, uid=5, seen_at=NOW))
        s.add(Sighting(message_pk=msg.id, mailbox="bosa", folder="INBOX", uidvalidity=9, uid=3, seen_at=NOW))
        s.commit()
        pk = msg.id
    return FolderStateStore(engine, run_db, lambda: NOW, watched), pk


def status(store: FolderStateStore, pk: int) -> tuple[str, str]:
    with Session(store.engine) as s:
        msg = s.get(Message, pk)
        assert msg is not None
        return msg.status, msg.status_reason


def test_mail_gone_from_one_inbox_waits_for_the_other_then_back_to_the_quarantine(tmp_path):
    store, pk = released_in_both_inboxes(tmp_path)
    assert asyncio.run(store.released("worldline", "INBOX", 7, 5)) == [5]
    asyncio.run(store.gone("worldline", "INBOX", 7, [5], "no longer in worldline INBOX"))
    # BOSA's copy may still bring it: still released, taken from there, not looked for here again.
    assert status(store, pk) == ("received", "")
    assert asyncio.run(store.released("worldline", "INBOX", 7, 5)) == []
    assert asyncio.run(store.released("bosa", "INBOX", 9, 3)) == [3]
    asyncio.run(store.gone("bosa", "INBOX", 9, [3], "no longer in bosa INBOX"))
    assert status(store, pk) == ("quarantined", "no longer in bosa INBOX")
    assert asyncio.run(store.released("bosa", "INBOX", 9, 3)) == []


def test_mail_gone_from_its_only_folder_goes_back_to_the_quarantine(tmp_path):
    store, pk = released_in_both_inboxes(tmp_path)
    with Session(store.engine) as s:  # BOSA's copy was seen under an earlier UIDVALIDITY: no watcher takes it
        row = s.get(FolderState, 2)
        assert row is not None and row.mailbox == "bosa"
        row.uidvalidity = 10
        s.add(row)
        s.commit()
    asyncio.run(store.gone("worldline", "INBOX", 7, [5], "no longer in worldline INBOX"))
    assert status(store, pk) == ("quarantined", "no longer in worldline INBOX")


def test_mail_gone_from_its_folder_whose_other_copy_is_in_a_folder_no_longer_watched(tmp_path):
    """BOSA's mailbox was watched when the mail came, and is not now (taken out of the
    configuration): nothing will take the mail from there, so it goes back to the quarantine."""
    store, pk = released_in_both_inboxes(tmp_path, watched=(("worldline", "INBOX"), ("worldline", "Sent")))
    asyncio.run(store.gone("worldline", "INBOX", 7, [5], "no longer in worldline INBOX"))
    assert status(store, pk) == ("quarantined", "no longer in worldline INBOX")
