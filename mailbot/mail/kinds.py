"""Each mail gets exactly one kind, the first of these that fits (pure).

bounce -> auto_reply -> submission -> staff -> reply -> unrelated
"""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.mail import robots
from mailbot.mail.documents import Reading
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo

KINDS = ("bounce", "auto_reply", "submission", "staff", "reply", "unrelated")


@dataclass(frozen=True)
class Kind:
    name: str
    reason: str


def classify(mail: ParsedMail, raw: bytes | None, subject: SubjectInfo, reading: Reading, *,
             staff_sender: bool, in_dossier: bool, announces_form: bool, rules: robots.RobotRules) -> Kind:
    if reason := robots.bounce_reason(mail, raw, rules=rules):
        return Kind("bounce", reason)
    if reason := robots.auto_reply_reason(mail, rules=rules):
        return Kind("auto_reply", reason)
    # a responder that sets no header: its canned text, in a reply with no attachment, no question;
    # never staff's ("votre demande a bien été enregistrée" from Worldline or BOSA is staff's reply)
    is_reply = subject.is_reply or bool(mail.in_reply_to or mail.references)
    if not staff_sender and (reason := robots.automatic_text_reason(mail, is_reply=is_reply, rules=rules)):
        return Kind("auto_reply", reason)
    if reading.documents:
        return Kind("submission", "carries " + ", ".join(reading.kinds))
    bulk = robots.bulk_reason(mail)
    if not staff_sender and not bulk:
        if subject.is_process and not subject.is_reply and not subject.is_forward:
            return Kind("submission", "the process's subject, announcing the order form")
        if announces_form:
            return Kind("submission", "the body says the order form is attached")
    if staff_sender:
        return Kind("staff", "from a watched mailbox or a staff address")
    if in_dossier and not bulk:
        return Kind("reply", "in a known dossier")
    return Kind("unrelated", bulk or "in no dossier")
