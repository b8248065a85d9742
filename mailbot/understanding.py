"""What the pipeline made of one mail: the understanding the answers are decided from, and the
outcome its callers (the watchers, replay) see."""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.dossiers.process import Change
from mailbot.mail.authn import SenderAuth
from mailbot.mail.documents import Reading
from mailbot.mail.forwards import ForwardedClient
from mailbot.mail.kinds import Kind, KindCode
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo
from mailbot.store.models import Dossier


@dataclass(frozen=True)
class Understanding:
    """What the bot made of one mail, for the answers and for the timeline."""
    mail: ParsedMail
    subject: SubjectInfo
    mailboxes: tuple[str, ...]
    reading: Reading
    kind: Kind
    kind_code: KindCode
    kind_reason: str
    dossier: Dossier | None
    matched_by: str
    staff_party: str | None  # the watched mailbox whose staff wrote it: only for an authenticated sender
    # not linked to its dossier before this mail (and no colleague), or not authenticated
    unlinked_sender: bool
    change: Change | None
    sender_auth: SenderAuth  # whether the mail is from its From address, and why (mailbot/trust.py)
    # A forward from staff: `mail` is then the client's mail it carries (when its client is known)
    forwarded: ForwardedClient | None = None


@dataclass(frozen=True)
class Outcome:
    message_pk: int
    key: str
    message_id: str | None
    mailboxes: tuple[str, ...]  # every watched mailbox the mail has been seen in so far
    duplicate: bool  # seen before: only where it was seen is recorded
    understanding: Understanding | None = None
    quarantined: str | None = None  # the reason, when set aside for a person
    failed: str | None = None  # the reason of a failure that will be retried
    known: tuple[str | None, str | None] = (None, None)  # a duplicate's recorded kind and dossier
    historical: bool = False  # came before the bot's first start: filed, not answered

    @property
    def kind(self) -> str | None:
        """As recorded (a `Kind` value)."""
        return self.understanding.kind.value if self.understanding else self.known[0]

    @property
    def dossier(self) -> str | None:
        u = self.understanding
        if u is None:
            return self.known[1]
        return u.dossier.reference if u.dossier else None
