"""The flow of one mail, top to bottom; the same for live mail (IMAP) and for replay.

    raw bytes + where seen (+ the mail read ahead by a reader process: mailbot/readers.py)
      -> parse                                                                 pure
      -> record (the message and where it was seen: committed before anything else)
      -> read (subject, the order forms, the other documents)                  pure
      -> understand (dossier, kind)                                            reads the store
      -> apply (dossier flags, contacts, events, deadlines)  ─ one transaction ─
    A failure rolls back that mail's changes, records the reason and sets the mail aside
    (quarantine) once it has failed `max_attempts` times; the caller goes on with the next.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from mailbot.answers.language import LanguageWords, load_language_words
from mailbot.answers.plan import Silence, plan_for_mail
from mailbot.answers.render import Renderer
from mailbot.calendar import BusinessCalendar, load_calendars
from mailbot.config import Settings
from mailbot.dossiers.matching import find_dossier
from mailbot.dossiers.process import (
    Change,
    apply_mail,
    is_colleague,
    is_linked,
    link_contact,
    open_dossier,
    record_unlinked,
)
from mailbot.dossiers.state import document_step
from mailbot.forms import FormRules, load_rules
from mailbot.mail.documents import (
    DocumentRules,
    Looked,
    Reading,
    announces_form,
    load_document_rules,
    read_documents,
)
from mailbot.mail.kinds import classify
from mailbot.mail.model import ParsedMail
from mailbot.mail.parse import parse_mail
from mailbot.mail.robots import RobotRules, load_robot_rules
from mailbot.mail.subject import (
    SubjectInfo,
    SubjectRules,
    load_subject_rules,
    parse_subject,
)
from mailbot.outbox import Limits, enqueue
from mailbot.readers import Read
from mailbot.store.models import AttachmentRecord, Decision, Dossier, Message, Sighting

log = logging.getLogger("mailbot.pipeline")
GAVE_UP_HEAD = 65536  # bytes of a mail the reader process died on, read to record it


@dataclass(frozen=True)
class Seen:
    """Where a mail was seen: a watched mailbox, a folder and, on IMAP, its UIDVALIDITY and UID."""
    mailbox: str
    folder: str = "INBOX"
    uidvalidity: int | None = None
    uid: int | None = None


@dataclass
class Context:
    """Everything the pipeline needs, loaded once at start-up and passed in explicitly."""
    settings: Settings
    engine: Engine
    form_rules: FormRules
    subject_rules: SubjectRules
    document_rules: DocumentRules
    robot_rules: RobotRules
    language_words: LanguageWords
    calendars: dict[str, BusinessCalendar]
    renderer: Renderer
    max_attempts: int = 3

    @property
    def limits(self) -> Limits:
        a = self.settings.answers
        return Limits(per_purpose_per_day=a.per_purpose_per_day, per_address_per_day=a.per_address_per_day)

    @classmethod
    def load(cls, settings: Settings, engine: Engine, max_attempts: int = 3) -> Context:
        files = settings.files
        calendars = load_calendars(files.calendars)
        for name, rule in (("prevalidation", settings.deadlines.prevalidation), ("encoding", settings.deadlines.encoding)):
            if rule.calendar not in calendars:
                from mailbot.errors import ConfigError
                raise ConfigError(f"deadlines.{name}.calendar: no calendar named {rule.calendar!r} in "
                                  f"{files.calendars or 'the shipped calendars'}")
        return cls(settings, engine, load_rules(files.form_rules), load_subject_rules(files.subject_rules),
                   load_document_rules(files.document_rules), load_robot_rules(files.robot_rules),
                   load_language_words(files.languages), calendars, Renderer(files.templates), max_attempts)


@dataclass(frozen=True)
class Understanding:
    """What the bot made of one mail, for the answers and for the timeline."""
    mail: ParsedMail
    subject: SubjectInfo
    mailboxes: tuple[str, ...]
    reading: Reading
    kind: str
    kind_reason: str
    dossier: Dossier | None
    matched_by: str
    staff_party: str | None
    unlinked_sender: bool
    change: Change | None


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

    @property
    def kind(self) -> str | None:
        return self.understanding.kind if self.understanding else self.known[0]

    @property
    def dossier(self) -> str | None:
        u = self.understanding
        if u is None:
            return self.known[1]
        return u.dossier.reference if u.dossier else None


def message_key(mail: ParsedMail) -> str:
    return f"mid:{mail.message_id}" if mail.message_id else f"hash:{mail.content_hash}"


def handle(raw: bytes, seen: Seen, at: dt.datetime, ctx: Context, read: Read | str | None = None) -> Outcome:
    """Record, understand and file one mail seen at `at`. Never raises for a bad mail.
    `read`: the mail already read ahead (without it, the attachments are read as needed), or
    why reading it failed beyond retrying (it is recorded and set aside at once)."""
    if isinstance(read, Read):
        mail, looked = read.mail, read.looked
    elif isinstance(read, str):  # it killed the reader process twice: its head is enough to record it
        mail, looked = parse_mail(raw[:GAVE_UP_HEAD]), Looked()
    else:
        mail, looked = parse_mail(raw), Looked()
    msg, mailboxes, known = _record(mail, seen, at, ctx)
    msg_pk, key, state = msg.id, msg.key, msg.status
    if state != "received":
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=True, known=known)
    if isinstance(read, str):
        log.warning("mail unreadable", extra={"message_pk": msg_pk, "reason": read})
        _failed(msg_pk, read, ctx, final=True)
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=False, quarantined=read, failed=read)
    try:
        with Session(ctx.engine, expire_on_commit=False) as session:
            session.add(msg)  # as _record left it: no need to load it again
            understanding = _understand_and_apply(session, raw, mail, looked, msg, seen, mailboxes, at, ctx)
            _answer(session, understanding, raw, msg_pk, at, ctx)
            msg.status = "processed"
            session.add(msg)
            session.commit()
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=False, understanding=understanding)
    except OperationalError:
        # The store failed (locked, full, gone), not the mail: no attempt counted, no quarantine;
        # the caller keeps the mail and brings it again once the store works.
        raise
    except Exception as exc:  # noqa: BLE001 - one bad mail must not stop the others
        # SQLAlchemy's messages carry the statement's parameters (mail content): keep the cause only.
        cause = getattr(exc, "orig", None) or exc
        reason = f"{type(exc).__name__}: {str(cause)[:300]}"
        log.warning("mail failed", extra={"message_pk": msg_pk, "reason": reason})
        quarantined = _failed(msg_pk, reason, ctx)
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=False,
                       quarantined=reason if quarantined else None, failed=reason)


def _record(mail: ParsedMail, seen: Seen, at: dt.datetime,
            ctx: Context) -> tuple[Message, tuple[str, ...], tuple[str | None, str | None]]:
    """Record the message and where it was seen, and commit, before anything is acted on."""
    key = message_key(mail)
    with Session(ctx.engine, expire_on_commit=False) as session:
        msg = session.exec(select(Message).where(Message.key == key)).first()
        places: list[Sighting] = []
        if msg is None:
            msg = Message(key=key, message_id=mail.message_id, content_hash=mail.content_hash,
                          subject=mail.subject[:500], sender=mail.sender, sent_at=mail.date, received_at=at,
                          defects="; ".join(mail.defects)[:2000])
            session.add(msg)
            session.flush()
        else:
            places = list(session.exec(select(Sighting).where(Sighting.message_pk == msg.id)))
        dossier = session.get(Dossier, msg.dossier_id) if msg.dossier_id is not None else None
        if not any(_same_place(p, seen) for p in places):
            session.add(Sighting(message_pk=msg.id, mailbox=seen.mailbox, folder=seen.folder,
                                 uidvalidity=seen.uidvalidity, uid=seen.uid, seen_at=at))
            if dossier is not None and seen.mailbox == "bosa" and dossier.bosa_copy_missing:
                dossier.bosa_copy_missing = False  # the copy did reach BOSA after all
                session.add(dossier)
        mailboxes = tuple(sorted({p.mailbox for p in places} | {seen.mailbox}))
        known = (msg.kind, dossier.reference if dossier is not None else None)
        session.commit()
        return msg, mailboxes, known


def _same_place(place: Sighting, seen: Seen) -> bool:
    if place.mailbox != seen.mailbox or place.folder != seen.folder:
        return False
    # On IMAP the same mail may be there twice (copied); replay has no UIDs.
    return seen.uid is None or place.uid is None or (place.uidvalidity, place.uid) == (seen.uidvalidity, seen.uid)


def _failed(msg_pk: int, reason: str, ctx: Context, final: bool = False) -> bool:
    with Session(ctx.engine) as session:
        msg = session.get(Message, msg_pk)
        msg.attempts += 1
        msg.status_reason = reason
        if final or msg.attempts >= ctx.max_attempts:
            msg.status = "quarantined"
        session.add(msg)
        session.commit()
        return msg.status == "quarantined"


def _answer(session: Session, u: Understanding, raw: bytes, msg_pk: int, at: dt.datetime, ctx: Context) -> None:
    """Decide the answers and write them to the outbox, in the mail's own transaction."""
    dossier_id = u.dossier.id if u.dossier else None
    for item in plan_for_mail(session, u, raw, msg_pk, at, ctx.settings, ctx.renderer, ctx.form_rules,
                              ctx.document_rules, ctx.robot_rules, ctx.language_words):
        if isinstance(item, Silence):
            session.add(Decision(message_pk=msg_pk, dossier_id=dossier_id, at=at, answered=False, reason=item.reason))
        else:
            enqueue(session, item, at, ctx.limits, shadow=ctx.settings.answers.shadow)


def _understand_and_apply(session: Session, raw: bytes, mail: ParsedMail, looked: Looked, msg: Message, seen: Seen,
                          mailboxes: tuple[str, ...], at: dt.datetime, ctx: Context) -> Understanding:
    settings = ctx.settings
    subject = parse_subject(mail.subject, ctx.subject_rules)
    staff_party = settings.mailbox_of(mail.sender) if mail.sender else None
    # The order forms first: their project name and enterprise number help find the dossier.
    pre = read_documents(mail, ctx.form_rules, None, mailboxes, ctx.document_rules, looked)
    forms = [d.check for d in pre.of("order_form") if d.check is not None and d.usable]
    match = find_dossier(session, mail, subject, forms)
    dossier = match.dossier
    reading = read_documents(mail, ctx.form_rules, document_step(dossier), mailboxes, ctx.document_rules, looked) \
        if dossier is not None else pre
    kind = classify(mail, raw, subject, reading, staff_sender=staff_party is not None,
                    in_dossier=dossier is not None, announces_form=announces_form(mail, ctx.document_rules),
                    rules=ctx.robot_rules)
    if dossier is None and kind.name == "submission":
        dossier = open_dossier(session, mail, subject, forms, at, settings, msg.id)
        if mail.sender and staff_party is None:
            link_contact(session, dossier, mail.sender, "sender")
    unlinked = False
    change = None
    if dossier is not None and kind.name not in ("bounce", "auto_reply"):
        if staff_party is None and mail.sender and not is_linked(session, dossier, mail.sender):
            if is_colleague(session, dossier, mail.sender, ctx.document_rules.public_domains):
                link_contact(session, dossier, mail.sender, "colleague")
            else:
                unlinked = True
        if unlinked:
            record_unlinked(session, dossier, reading, msg.id, at)
        else:
            change = apply_mail(session, dossier, mail=mail, kind=kind.name, reading=reading, at=at,
                                settings=settings, calendars=ctx.calendars, message_pk=msg.id,
                                staff_party=staff_party, inboxes=mailboxes)
    msg.kind, msg.kind_reason = kind.name, kind.reason[:500]
    msg.dossier_id = dossier.id if dossier is not None else None
    msg.unlinked_sender = unlinked
    msg.documents = ",".join(reading.kinds)
    for index, att in enumerate(mail.attachments):
        doc = next((d for d in reading.documents if d.index == index), None)
        why = doc.reason if doc else next((r for i, r in reading.ignored if i == index), "")
        session.add(AttachmentRecord(message_pk=msg.id, filename=att.filename[:255], content_type=att.content_type[:100],
                                     size=att.size, sha256=att.sha256, origin=att.origin,
                                     document=doc.kind if doc else None, reason=why[:300]))
    return Understanding(mail, subject, mailboxes, reading, kind.name, kind.reason, dossier, match.how, staff_party,
                         unlinked, change)
