"""Each mail gets exactly one kind, the first of these that fits (pure).

bounce -> auto_reply -> submission -> staff -> reply -> unrelated

A kind comes with a code saying which test made it (what code decides on) and a text for
people (the timeline, the digest), which may be reworded freely.

`staff_sender` is the caller's word that staff wrote the mail: only for a mail found in a
watched mailbox's Sent folder or authenticated from a staff address (mailbot/trust.py). A
forged staff From is not staff: its mail is classified as anyone else's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailbot.mail import robots
from mailbot.mail.documents import Reading
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo


class Kind(StrEnum):
    """What a mail is; the values are stored in `Message.kind`."""
    BOUNCE = "bounce"
    AUTO_REPLY = "auto_reply"
    SUBMISSION = "submission"
    STAFF = "staff"
    REPLY = "reply"
    UNRELATED = "unrelated"


class KindCode(StrEnum):
    """Which test gave a mail its kind."""
    DELIVERY_REPORT = "delivery_report"  # bounce
    AUTO_REPLY_HEADER = "auto_reply_header"  # auto_reply: RFC 3834 or a vendor's header
    AUTO_REPLY_TEXT = "auto_reply_text"  # auto_reply: a responder's canned text, no header
    DOCUMENTS = "documents"  # submission: carries process documents
    PROCESS_SUBJECT = "process_subject"  # submission: the process's subject announces the form
    ANNOUNCED_FORM = "announced_form"  # submission: the body says the form is attached
    STAFF_SENDER = "staff_sender"  # staff
    IN_DOSSIER = "in_dossier"  # reply
    BULK = "bulk"  # unrelated: a list or bulk mail
    NO_DOSSIER = "no_dossier"  # unrelated: in no dossier


@dataclass(frozen=True)
class Classified:
    kind: Kind
    code: KindCode
    reason: str  # for people; code decides on `code`, never on this text


def classify(mail: ParsedMail, raw: bytes | None, subject: SubjectInfo, reading: Reading, *,
             staff_sender: bool, in_dossier: bool, announces_form: bool, rules: robots.RobotRules) -> Classified:
    if reason := robots.bounce_reason(mail, raw, rules=rules):
        return Classified(Kind.BOUNCE, KindCode.DELIVERY_REPORT, reason)
    if reason := robots.auto_reply_reason(mail, rules=rules):
        return Classified(Kind.AUTO_REPLY, KindCode.AUTO_REPLY_HEADER, reason)
    # a responder that sets no header: its canned text, in a reply with no attachment, no question;
    # never staff's ("votre demande a bien été enregistrée" from Worldline or BOSA is staff's reply)
    is_reply = subject.is_reply or bool(mail.in_reply_to or mail.references)
    if not staff_sender and (reason := robots.automatic_text_reason(mail, is_reply=is_reply, rules=rules)):
        return Classified(Kind.AUTO_REPLY, KindCode.AUTO_REPLY_TEXT, reason)
    if reading.documents:
        return Classified(Kind.SUBMISSION, KindCode.DOCUMENTS, "carries " + ", ".join(reading.kinds))
    bulk = robots.bulk_reason(mail)
    if not staff_sender and not bulk:
        if subject.is_process and not subject.is_reply and not subject.is_forward:
            return Classified(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT,
                              "the process's subject, announcing the order form")
        if announces_form:
            return Classified(Kind.SUBMISSION, KindCode.ANNOUNCED_FORM, "the body says the order form is attached")
    if staff_sender:
        return Classified(Kind.STAFF, KindCode.STAFF_SENDER, "from a watched mailbox or a staff address, authenticated")
    if in_dossier and not bulk:
        return Classified(Kind.REPLY, KindCode.IN_DOSSIER, "in a known dossier")
    if bulk:
        return Classified(Kind.UNRELATED, KindCode.BULK, bulk)
    return Classified(Kind.UNRELATED, KindCode.NO_DOSSIER, "in no dossier")
