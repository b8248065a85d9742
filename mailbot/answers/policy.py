"""When the bot must not answer a mail at all (RFC 3834 and loop safety). Pure.

Each rule says why, naming the header, the rule or the limit, so that every decision not to
answer can be recorded with its reason.
"""

from __future__ import annotations

from mailbot.config import Settings
from mailbot.mail import robots
from mailbot.mail.model import ParsedMail


def no_answer_reason(mail: ParsedMail, raw: bytes | None, settings: Settings) -> str | None:
    """None when an automatic answer is allowed; else why not."""
    checks = (
        lambda: robots.bounce_reason(mail, raw),
        lambda: robots.auto_reply_reason(mail),
        lambda: robots.bulk_reason(mail),
        lambda: robots.null_return_path_reason(mail),
        lambda: None if mail.sender else "no usable From address",
        lambda: "several From addresses (possibly forged)" if len(mail.from_all) > 1 else None,
        # another mailbox in From that the parser could not use ('"x"@evil.example, <client>'):
        # the sender left is not the only author the mail claims
        lambda: "an unusable address beside the sender in From (possibly forged)"
        if "unusable address in from" in mail.defects else None,
        lambda: robots.robot_address_reason(mail.sender or ""),
        lambda: "from one of the bot's own mailboxes" if mail.sender in settings.own_addresses else None,
        lambda: "from a staff address" if settings.mailbox_of(mail.sender or "") else None,
    )
    for check in checks:
        if reason := check():
            return reason
    return None
