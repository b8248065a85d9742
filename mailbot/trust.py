"""Whether a mail is from its From address, given where it was seen (issue 10, items 1 and 2).

A mail earns its From in one of two ways:

* found in a watched mailbox's Sent folder: only that mailbox's users (and the bot) put mail
  there, so what is there was written from the mailbox, whatever its headers say;
* in an inbox, an aligned DMARC (or DKIM) pass stamped by a receiving server that mailbox's
  `[mailboxes.NAME.authentication]` trusts (mailbot/mail/authn.py, pure).

Anything else is unauthenticated: the pipeline files it but treats it as from an unlinked
sender (no details, no change to a dossier, a note to staff naming `SenderAuth.reason`).
"""

from __future__ import annotations

from mailbot.config import Settings
from mailbot.mail.authn import AuthStatus, SenderAuth, authenticate_sender, normalise_domain
from mailbot.mail.model import ParsedMail
from mailbot.seen import Seen

SENT_FOLDER_METHOD = "sent_folder"


def sent_folder(settings: Settings, mailbox: str) -> str:
    """The name of `mailbox`'s Sent folder ("Sent" where it has no IMAP settings, as in replay)."""
    box = settings.mailboxes.get(mailbox)
    return box.imap.sent if box is not None and box.imap is not None else "Sent"


def in_sent_folder(seen: Seen, settings: Settings) -> bool:
    return seen.mailbox in settings.mailboxes and seen.folder == sent_folder(settings, seen.mailbox)


def sender_auth(raw: bytes, mail: ParsedMail, seen: Seen, settings: Settings) -> SenderAuth:
    """The mail's SenderAuth, for the watched mailbox and folder it was seen in. Never raises."""
    addresses = [a.email for a in mail.from_all]
    if in_sent_folder(seen, settings):
        domain = normalise_domain(addresses[0].rpartition("@")[2]) if len(addresses) == 1 else None
        return SenderAuth(AuthStatus.PASS, domain, SENT_FOLDER_METHOD,
                          f"Found in the {seen.mailbox} mailbox's Sent folder", None, authenticated=True)
    box = settings.mailboxes.get(seen.mailbox)
    if box is None:  # a mailbox the configuration no longer has: nobody vouches
        return SenderAuth(AuthStatus.UNKNOWN_SERVER, None, None,
                          f"Seen in {seen.mailbox!r}, a mailbox the configuration does not name")
    return authenticate_sender(raw, addresses, box.authentication)
