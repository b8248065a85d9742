"""Who wrote to a dossier: the only addresses the bot may remind (it never mails an address that
never wrote, such as one merely named in an order form)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.sql import Select
from sqlmodel import Session, col, select

from mailbot.addresses import normalise_address
from mailbot.store.models import Contact, Dossier, Message

# A person's mail in the dossier's own process; not a robot's, staff's or an unrelated one.
WRITTEN_KINDS = ("submission", "reply")


def writers_of(session: Session, dossier_ids: Iterable[int] | Select) -> dict[int, list[str]]:
    """Per dossier, the addresses that wrote to it themselves, the latest writer first, each
    person once (compared normalised) and as they last wrote it: senders of its mails filed as
    theirs (not a stranger's mail kept aside, not a forged one) who are still its contacts."""
    ids = dossier_ids if isinstance(dossier_ids, Select) else list(dossier_ids)  # a query of ids, or ids
    contacts: dict[int, set[str]] = {}
    for dossier_id, email in session.exec(select(Contact.dossier_id, Contact.email)
                                          .where(col(Contact.dossier_id).in_(ids))):
        contacts.setdefault(dossier_id, set()).add(normalise_address(email))
    out: dict[int, list[str]] = {}
    seen: dict[int, set[str]] = {}
    rows = session.exec(select(Message.dossier_id, Message.sender)
                        .where(col(Message.dossier_id).in_(ids), col(Message.sender).is_not(None),
                               col(Message.kind).in_(WRITTEN_KINDS), Message.unlinked_sender == False)  # noqa: E712
                        .order_by(col(Message.id).desc()))
    for row_dossier, sender in rows:
        if row_dossier is None or sender is None:  # excluded by the query
            continue
        dossier_id = row_dossier
        who = normalise_address(sender)
        if who in contacts.get(dossier_id, ()) and who not in seen.setdefault(dossier_id, set()):
            seen[dossier_id].add(who)
            out.setdefault(dossier_id, []).append(sender)
    return out


def addresses_that_wrote(session: Session, dossier: Dossier) -> list[str]:
    """The addresses that wrote to `dossier` themselves, the latest writer first (writers_of)."""
    assert dossier.id is not None  # a dossier read from the store
    return writers_of(session, [dossier.id]).get(dossier.id, [])
