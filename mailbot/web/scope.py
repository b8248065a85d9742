"""What a signed-in staff member may see: what their team's mailbox saw. A dossier is theirs
when one of its mails was seen in that mailbox; a mail, when it was seen there; a mail of the
bot's, when it went to that mailbox, its staff, or came from it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false
from sqlmodel import Session, col, select

from mailbot.config import Settings
from mailbot.store.models import Dossier, Message, OutboxMail, Sighting


@dataclass(frozen=True)
class Scope:
    mailboxes: tuple[str, ...]  # the teams' mailbox names (worldline, bosa)
    addresses: frozenset[str]  # their shared addresses and staff

    @classmethod
    def of(cls, teams: tuple[str, ...], settings: Settings) -> Scope:
        addresses = {settings.mailboxes[t].address for t in teams}
        for team in teams:
            addresses |= set(settings.mailboxes[team].staff) | set(settings.allowed_staff(team))
        return cls(tuple(sorted(teams)), frozenset(a.lower() for a in addresses))

    def message_seen(self) -> ColumnElement[bool]:
        """A Message row was seen in one of the scope's mailboxes."""
        if not self.mailboxes:
            return false()
        return select(Sighting.id).where(Sighting.message_pk == Message.id,
                                         col(Sighting.mailbox).in_(self.mailboxes)).exists()

    def dossier_seen(self) -> ColumnElement[bool]:
        """A Dossier row has a mail seen in one of the scope's mailboxes."""
        if not self.mailboxes:
            return false()
        # Nested, not a join: SQLite then walks the dossier's mail by its index, then each mail's
        # sightings, instead of every sighting of the mailbox.
        return select(Message.id).where(col(Message.dossier_id) == Dossier.id, self.message_seen()).exists()

    def dossier(self, session: Session, reference: str) -> Dossier | None:
        """The dossier of `reference` when the scope's mailboxes saw it; to the others, none."""
        return session.exec(select(Dossier).where(col(Dossier.reference) == reference.upper(),
                                                  self.dossier_seen())).first()

    def sees(self, mail: OutboxMail) -> bool:
        if mail.sender.lower() in self.addresses:
            return True
        return any(a.lower() in self.addresses for a in json.loads(mail.recipients) + json.loads(mail.cc))
