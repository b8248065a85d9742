"""Build the message to send from an outbox row (pure)."""

from __future__ import annotations

import email.utils
import json
from email.message import EmailMessage

from mailbot.store.models import OutboxMail


def compose(mail: OutboxMail) -> EmailMessage:
    """The outbox row as a MIME message: plain text with an HTML alternative, threaded, and
    marked as automatic (RFC 3834) so that auto-responders do not answer it."""
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = ", ".join(json.loads(mail.recipients))
    cc = json.loads(mail.cc)
    if cc:
        msg["Cc"] = ", ".join(cc)
    # One line, whatever the source said. A literal "=?" (an encoded word a mail left undecoded,
    # cut short by a subject's length limit) would be decoded here as RFC 2047 and may not
    # encode back: it is kept as text.
    msg["Subject"] = " ".join(mail.subject.split()).replace("=?", "= ?")
    msg["Date"] = email.utils.format_datetime(mail.created_at)
    msg["Message-ID"] = f"<{mail.message_id}>"
    if mail.in_reply_to:
        msg["In-Reply-To"] = f"<{mail.in_reply_to}>"
    if mail.references:
        msg["References"] = mail.references
    msg["Auto-Submitted"] = "auto-replied"  # on everything the bot sends (RFC 3834)
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Mailbot-Purpose"] = mail.purpose
    msg.set_content(mail.body_text)
    msg.add_alternative(mail.body_html, subtype="html")
    if mail.language in ("fr", "nl"):  # after set_content(), which drops every Content-* header
        msg["Content-Language"] = mail.language
    return msg
