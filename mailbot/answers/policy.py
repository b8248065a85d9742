"""When the bot must not answer a mail at all (RFC 3834 and loop safety). Pure.

Each rule says why, naming the header, the rule or the limit, so that every decision not to
answer can be recorded with its reason.
"""

from __future__ import annotations

from dataclasses import replace

from mailbot.config import Settings
from mailbot.mail import robots
from mailbot.mail.documents import DocumentRules, announces_form
from mailbot.mail.model import ParsedMail
from mailbot.mail.robots import RobotRules


def no_answer_reason(mail: ParsedMail, raw: bytes | None, settings: Settings, robot_rules: RobotRules) -> str | None:
    """None when an automatic answer is allowed; else why not."""
    checks = (
        lambda: robots.bounce_reason(mail, raw, rules=robot_rules),
        lambda: robots.auto_reply_reason(mail, rules=robot_rules),
        lambda: robots.bulk_reason(mail),
        lambda: robots.null_return_path_reason(mail),
        lambda: None if mail.sender else "no usable From address",
        lambda: "several From addresses (possibly forged)" if len(mail.from_all) > 1 else None,
        # another mailbox in From that the parser could not use ('"x"@evil.example, <client>'):
        # the sender left is not the only author the mail claims
        lambda: "an unusable address beside the sender in From (possibly forged)"
        if "unusable address in from" in mail.defects else None,
        lambda: robots.robot_address_reason(mail.sender or "", rules=robot_rules),
        lambda: "from one of the bot's own mailboxes" if mail.sender in settings.own_addresses else None,
        lambda: "from a staff address" if settings.mailbox_of(mail.sender or "") else None,
    )
    for check in checks:
        if reason := check():
            return reason
    return None


def echo_reason(mail: ParsedMail, answer: str, seconds: float,
                document_rules: DocumentRules, robot_rules: RobotRules) -> str | None:
    """A reply to one of the bot's own answers (`answer`: its purpose; `seconds` after it went)
    that brings nothing new is not answered again: answering it is how the bot and a naive
    auto-responder, one that sets no header and writes no known text, would keep each other
    busy. New is an attachment, a question or an order form announced in what the sender wrote
    (not in the answer it quotes); a reply whose text is all below the quote is answered. Sooner than
    [replies] automatic_within_seconds
    (the robot rules) only an attachment counts: no person reads, writes and sends so fast.
    None when the reply may be answered."""
    if mail.attachments:
        return None
    after = f"{_duration(seconds)} after it"
    if robots.quick_reply(seconds, rules=robot_rules):
        return (f"loop: a reply to the bot's {answer} answer {after}, with no attachment: "
                "a program's, not answered again")
    own = robots.own_text(mail.body_text, rules=robot_rules)
    if not own:  # written under the quote (bottom-posting): not read here, answered as before
        return None
    if robots.asks_something(own) or announces_form(replace(mail, body_text=own), document_rules):
        return None
    return (f"loop: a reply to the bot's {answer} answer ({after}) with no attachment and no new request: "
            "not answered again")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''}"
    return f"{seconds} s"
