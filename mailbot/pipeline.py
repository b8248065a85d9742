"""The flow of one mail, top to bottom; the same for live mail (IMAP) and for replay.

    raw bytes + where seen (+ the mail read ahead by a reader process: mailbot/readers.py)
      -> parse                                                                 pure
      -> record (the message and where it was seen: committed before anything else)
      -> read (subject, the order forms, the other documents)                  pure
      -> who wrote: the sender authenticated, or not (trust.py)                pure
      -> understand (dossier, kind)                                            reads the store
      -> apply (dossier flags, contacts, events, deadlines)           ┐ one transaction
      -> answer: read the facts, decide (pure), render, queue          ┘ (answers/facts, plan, drafts, outbox)
         or, for mail from before the bot's first start, no answer at all  (history.py)
    The values it passes around live apart: seen.py, understanding.py, context.py.
    A failure rolls back that mail's changes, records the reason and sets the mail aside
    (quarantine) once it has failed `max_attempts` times; the caller goes on with the next.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from mailbot.answers.drafts import draft_for
from mailbot.answers.facts import read_facts
from mailbot.answers.plan import Case, Silence, decide
from mailbot.context import Context
from mailbot.dossiers.matching import find_dossier
from mailbot.dossiers.process import (
    apply_mail,
    is_colleague,
    is_linked,
    link_contact,
    new_dossier_limit,
    open_dossier,
    record_forward,
    record_unlinked,
)
from mailbot.dossiers.state import document_step
from mailbot.history import file_as_history, is_historical
from mailbot.mail.authn import SenderAuth
from mailbot.mail.documents import Looked, Reading, announces_form, read_documents
from mailbot.mail.forwards import forwarded_client
from mailbot.mail.kinds import Kind, classify
from mailbot.mail.model import ParsedMail
from mailbot.mail.parse import parse_mail
from mailbot.mail.subject import parse_subject
from mailbot.outbox import enqueue
from mailbot.readers import Read, Unreadable
from mailbot.seen import Seen
from mailbot.store.models import AttachmentRecord, Decision, Dossier, Message, Sighting
from mailbot.trust import sender_auth
from mailbot.understanding import Outcome, Understanding

log = logging.getLogger("mailbot.pipeline")
GAVE_UP_HEAD = 65536  # bytes of a mail the reader process died on, read to record it


def message_key(mail: ParsedMail) -> str:
    return f"mid:{mail.message_id}" if mail.message_id else f"hash:{mail.content_hash}"


def handle(raw: bytes, seen: Seen, at: dt.datetime, ctx: Context, read: Read | Unreadable | None = None) -> Outcome:
    """Record, understand and file one mail seen at `at`. Never raises for a bad mail.
    `read`: the mail as the reader process read it (the daemon always gives it: no attachment
    is read on its database thread), or why it could not be read within the bounds (it is
    recorded and set aside at once); without it (replay), the attachments are read here. Mail that
    reached its mailbox before the bot's first start (`ctx.history_before`) is history: filed
    at the time it came, and not answered."""
    historical = is_historical(seen, ctx.history_before)
    if historical:
        at = seen.arrived or at
    if isinstance(read, Read):
        mail, looked = read.mail, read.looked
    elif isinstance(read, Unreadable):  # past a bound in the reader process: its head is enough to record it
        mail, looked = parse_mail(raw[:GAVE_UP_HEAD]), Looked()
    else:
        mail, looked = parse_mail(raw), Looked()
    msg, mailboxes, known = _record(mail, seen, at, ctx)
    msg_pk, key, state = msg.id, msg.key, msg.status
    assert msg_pk is not None  # _record flushed it
    auth = sender_auth(raw, mail, seen, ctx.settings)
    # A copy that vouches for a sender an earlier copy did not (the same mail in the other inbox,
    # a staff mail's copy in the Sent folder) files it again, as from its sender.
    again = state == "processed" and bool(msg.sender_auth) and not msg.sender_authenticated and auth.authenticated \
        and not isinstance(read, Unreadable)
    if state != "received" and not again:
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=True, known=known)
    if isinstance(read, Unreadable):
        log.warning("mail unreadable", extra={"message_pk": msg_pk, "reason": read.reason})
        _failed(msg_pk, read.reason, ctx, final=True)
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=False, quarantined=read.reason,
                       failed=read.reason)
    try:
        with Session(ctx.engine, expire_on_commit=False) as session:
            session.add(msg)  # as _record left it: no need to load it again
            understanding = _understand_and_apply(session, raw, mail, looked, msg, auth, mailboxes, at, ctx, again)
            if historical:
                file_as_history(session, understanding, msg_pk, at, ctx.history_before)
            else:
                _answer(session, understanding, raw, msg_pk, at, ctx)
            msg.status = "processed"
            session.add(msg)
            session.commit()
        return Outcome(msg_pk, key, mail.message_id, mailboxes, duplicate=False, understanding=understanding,
                       historical=historical)
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
        assert msg.id is not None  # read back, or flushed above
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
        assert msg is not None  # recorded by _record before anything was done with it
        msg.attempts += 1
        msg.status_reason = reason
        if final or msg.attempts >= ctx.max_attempts:
            msg.status = "quarantined"
        session.add(msg)
        session.commit()
        return msg.status == "quarantined"


def _answer(session: Session, u: Understanding, raw: bytes, msg_pk: int, at: dt.datetime, ctx: Context) -> None:
    """Read the facts, decide, render and write the answers to the outbox, in the mail's own
    transaction; a silence is recorded with its reason."""
    dossier_id = u.dossier.id if u.dossier else None
    case = Case(u, read_facts(session, u, at), raw, ctx.settings, ctx.form_rules, ctx.document_rules, ctx.robot_rules)
    for intent in decide(case):
        if isinstance(intent, Silence):
            session.add(Decision(message_pk=msg_pk, dossier_id=dossier_id, at=at, answered=False, reason=intent.reason))
        else:
            enqueue(session, draft_for(intent, u, msg_pk, at, ctx.settings, ctx.renderer, ctx.language_words),
                    at, ctx.limits,
                    shadow=ctx.settings.answers.shadow)


def _understand_and_apply(session: Session, raw: bytes, mail: ParsedMail, looked: Looked, msg: Message,
                          auth: SenderAuth, mailboxes: tuple[str, ...], at: dt.datetime, ctx: Context,
                          again: bool = False) -> Understanding:
    """`auth`: whether the mail is from its From address. An unauthenticated mail is filed but
    treated as from an unlinked sender: it opens no dossier (staff get a note and the digest
    lists it; an authenticated copy seen later files it then), links nobody, changes no dossier
    and gets no details. `again`: such a mail, filed before, now authenticated by a later copy."""
    assert msg.id is not None  # recorded by _record
    settings = ctx.settings
    subject = parse_subject(mail.subject, ctx.subject_rules)
    # A client's mail forwarded by staff is the client's from here on (its forwarder's mailbox had
    # it); only an authenticated forward counts: a forged one names no client.
    forwarded = forwarded_client(mail, subject, settings, ctx.forward_rules) if auth.authenticated else None
    if forwarded is not None and forwarded.client is not None:
        mail = forwarded.client_mail(mail)
        subject = parse_subject(mail.subject, ctx.subject_rules)
        mailboxes_had = tuple(sorted({*mailboxes, forwarded.by}))
    else:
        mailboxes_had = mailboxes
    claimed_party = settings.mailbox_of(mail.sender) if mail.sender else None
    staff_party = claimed_party if auth.authenticated else None  # a forged staff mail is no staff mail
    # The order forms first: their project name and enterprise number help find the dossier.
    pre = read_documents(mail, ctx.form_rules, None, mailboxes, ctx.document_rules, looked)
    forms = [d.check for d in pre.of("order_form") if d.check is not None and d.usable]
    match = find_dossier(session, mail, subject, forms, staff=staff_party is not None,
                         is_free_mail=ctx.document_rules.is_free_mail)
    dossier = match.dossier
    reading = read_documents(mail, ctx.form_rules, document_step(dossier), mailboxes, ctx.document_rules, looked) \
        if dossier is not None else pre
    classified = classify(mail, raw, subject, reading, staff_sender=staff_party is not None,
                          in_dossier=dossier is not None, announces_form=announces_form(mail, ctx.document_rules),
                          rules=ctx.robot_rules)
    if dossier is None and classified.kind == Kind.SUBMISSION and auth.authenticated:
        limit = settings.answers.max_new_dossiers_per_sender_per_day
        if held := new_dossier_limit(session, mail.sender, at, limit):
            # kept in no dossier: the decision says why, the digest lists it for a person
            session.add(Decision(message_pk=msg.id, at=at, purpose="dossier", answered=False, reason=held))
        else:
            dossier = open_dossier(session, mail, subject, forms, at, settings, msg.id)
            if mail.sender and staff_party is None:
                link_contact(session, dossier, mail.sender, "sender")
    unlinked = False
    change = None
    if dossier is not None and classified.kind not in (Kind.BOUNCE, Kind.AUTO_REPLY):
        if not auth.authenticated:
            unlinked = True
        elif staff_party is None and mail.sender and not is_linked(session, dossier, mail.sender):
            if forwarded is not None and forwarded.client is not None:  # staff named the client, and vouch for it
                link_contact(session, dossier, mail.sender, "forwarded")
            elif is_colleague(session, dossier, mail.sender, ctx.document_rules.is_free_mail):
                link_contact(session, dossier, mail.sender, "colleague")
            else:
                unlinked = True
        if unlinked:
            record_unlinked(session, dossier, reading, msg.id, at, "" if auth.authenticated else auth.reason)
        else:
            change = apply_mail(session, dossier, mail=mail, kind=classified.kind, reading=reading, at=at,
                                settings=settings, calendars=ctx.calendars, message_pk=msg.id,
                                staff_party=staff_party, inboxes=mailboxes_had)
            if forwarded is not None and forwarded.client is not None:
                record_forward(session, dossier, forwarded, msg.id, at)
    msg.kind, msg.kind_reason = classified.kind.value, classified.reason[:500]
    msg.kind_code = classified.code.value
    msg.dossier_id = dossier.id if dossier is not None else None
    msg.unlinked_sender = unlinked
    msg.sender_auth, msg.sender_authenticated = auth.status.value, auth.authenticated
    msg.sender_auth_reason = auth.reason[:500]
    msg.documents = ",".join(reading.kinds)
    if not again:  # a mail filed again keeps the attachments recorded the first time
        _record_attachments(session, mail, reading, msg.id)
    return Understanding(mail, subject, mailboxes, reading, classified.kind, classified.code, classified.reason,
                         dossier, match.how, staff_party, unlinked, change, auth, forwarded)


def _record_attachments(session: Session, mail: ParsedMail, reading: Reading, msg_pk: int) -> None:
    for index, att in enumerate(mail.attachments):
        doc = next((d for d in reading.documents if d.index == index), None)
        why = doc.reason if doc else next((r for i, r in reading.ignored if i == index), "")
        session.add(AttachmentRecord(message_pk=msg_pk, filename=att.filename[:255],
                                     content_type=att.content_type[:100],
                                     size=att.size, sha256=att.sha256, origin=att.origin,
                                     document=doc.kind if doc else None, reason=why[:300]))
