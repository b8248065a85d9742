"""Move a dossier along the process for one understood mail: flags, contacts, events, deadlines.

Every change is an event with its time and cause: the audit trail a person reads to see why
the bot did what it did.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlmodel import Session, func, select

from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers import deadlines
from mailbot.forms import FormCheck
from mailbot.forms.changes import compare
from mailbot.mail.documents import Reading
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo, project_key
from mailbot.store.models import Contact, Dossier, Event, FormCheckRecord

CONTACT_FIELDS = {"business_contact_email": "business", "technical_contact_email": "technical",
                  "billing_email": "billing"}


@dataclass(frozen=True)
class Change:
    """What one mail did to its dossier (for the answers that follow)."""
    events: tuple[str, ...]
    form: FormCheck | None  # the order form checked in this mail, if any
    previous_form: FormCheck | None  # the dossier's form before this one, for "what changed"


def new_reference(session: Session, prefix: str, at: dt.datetime) -> str:
    year = at.year
    like = f"{prefix}-{year}-%"
    count = session.exec(select(func.count()).select_from(Dossier).where(Dossier.reference.like(like))).one()
    return f"{prefix}-{year}-{count + 1:04d}"


def open_dossier(session: Session, mail: ParsedMail, subject: SubjectInfo, forms: list[FormCheck],
                 at: dt.datetime, settings: Settings, message_pk: int) -> Dossier:
    form_values = forms[0].values if forms else {}
    name = subject.project or form_values.get("project_name") or form_values.get("legal_name") \
        or (mail.from_.name if mail.from_ and mail.from_.name else None) or (mail.sender or "unknown")
    dossier = Dossier(reference=new_reference(session, settings.process.reference_prefix, at),
                      project_name=name[:200], project_key=project_key(name) or name.casefold(),
                      language=(forms[0].language if forms else None) or subject.language,
                      opened_at=at, updated_at=at)
    session.add(dossier)
    session.flush()
    session.add(Event(dossier_id=dossier.id, at=at, kind="dossier_opened", message_pk=message_pk,
                      detail=f"project {name!r} from {mail.sender or 'an unknown sender'}"))
    return dossier


def _contacts(session: Session, dossier: Dossier) -> set[str]:
    """The dossier's contact addresses, read once per session (a mail's transaction) and kept
    up to date by link_contact: a mail asks about them several times."""
    known = session.info.setdefault("contacts", {})
    if dossier.id not in known:
        known[dossier.id] = set(session.exec(select(Contact.email).where(Contact.dossier_id == dossier.id)))
    return known[dossier.id]


def link_contact(session: Session, dossier: Dossier, email: str, role: str) -> bool:
    email = email.lower()
    contacts = _contacts(session, dossier)
    if email in contacts:
        return False
    session.add(Contact(dossier_id=dossier.id, email=email, role=role))
    contacts.add(email)
    return True


def is_colleague(session: Session, dossier: Dossier, email: str, public_domains: frozenset[str]) -> bool:
    """From the organisation's own domain, as one of the dossier's contacts (not a public provider)."""
    domain = email.rpartition("@")[2].lower()
    if not domain or domain in public_domains:
        return False
    return any(e.rpartition("@")[2] == domain for e in _contacts(session, dossier))


def record_unlinked(session: Session, dossier: Dossier, reading: Reading, message_pk: int, at: dt.datetime) -> None:
    """A stranger's mail in a dossier's thread: kept for staff, but it changes nothing (no form,
    no contact, no step), so that nobody takes a dossier over by writing into its thread."""
    docs = ", ".join(reading.kinds) or "no document"
    session.add(Event(dossier_id=dossier.id, at=at, kind="unlinked_sender_mail", message_pk=message_pk,
                      detail=f"from a sender not linked to the dossier ({docs}); a person decides"))


def record_forward(session: Session, dossier: Dossier, forwarded, message_pk: int, at: dt.datetime) -> None:
    """A client's mail that staff forwarded (mail/forwards.py ForwardedClient): the dossier keeps
    who forwarded it and how."""
    session.add(Event(dossier_id=dossier.id, at=at, kind=f"forwarded_by_{forwarded.by}", message_pk=message_pk,
                      detail=f"the mail of {forwarded.client.email} forwarded by {forwarded.forwarder} "
                             f"({'as an attached message' if forwarded.how == 'attached' else 'inline'})"))


def is_linked(session: Session, dossier: Dossier, email: str | None) -> bool:
    return bool(email) and email.lower() in _contacts(session, dossier)


def last_form(session: Session, dossier: Dossier) -> FormCheck | None:
    row = session.exec(select(FormCheckRecord).where(FormCheckRecord.dossier_id == dossier.id)
                       .order_by(FormCheckRecord.id.desc()).limit(1)).first()
    if row is None:
        return None
    from mailbot.forms.checker import Problem

    problems = tuple(Problem(f, c, m) for f, c, m in json.loads(row.problems))
    return FormCheck(row.filename, row.complete, row.language, row.version, problems, json.loads(row.values))


def apply_mail(session: Session, dossier: Dossier, *, mail: ParsedMail, kind: str, reading: Reading,
               at: dt.datetime, settings: Settings, calendars: dict[str, BusinessCalendar],
               message_pk: int, staff_party: str | None, inboxes: tuple[str, ...]) -> Change:
    events: list[str] = []

    def event(name: str, detail: str = "") -> None:
        events.append(name)
        session.add(Event(dossier_id=dossier.id, at=at, kind=name, message_pk=message_pk, detail=detail))

    previous = last_form(session, dossier) if reading.of("order_form") else None
    form = _record_forms(session, dossier, mail, reading, message_pk, at)
    if form is not None:
        if previous is not None and (changes := compare(previous, form)):
            event("form_changed", changes.summary())
        _apply_form(session, dossier, form, at, settings, calendars, message_pk, event)
        if "bosa" not in inboxes and settings.mailboxes["bosa"].address not in {a.email for a in mail.recipients()}:
            dossier.bosa_copy_missing = True
            event("bosa_copy_missing", "the order form came without BOSA's mailbox in copy")
    elif reading.of("order_form") and dossier.form_status == "none":
        dossier.form_status = "attempted"
        event("form_unusable", "; ".join(d.reason for d in reading.of("order_form")))
    if reading.of("convention") and not dossier.convention_received:
        dossier.convention_received = True
        event("convention_received")
    both_before = dossier.signed_form_received and dossier.id_copy_received
    if reading.usable("signed_order_form") and not dossier.signed_form_received:
        dossier.signed_form_received = True
        event("signed_form_received")
    if reading.usable("id_copy") and not dossier.id_copy_received:
        dossier.id_copy_received = True
        event("id_copy_received")
    if not both_before and dossier.signed_form_received and dossier.id_copy_received:
        deadlines.start(session, dossier, "encoding", at, settings, calendars, message_pk)
    if kind == "staff":
        _apply_staff(session, dossier, at, message_pk, staff_party, event)
    elif kind == "reply":
        event("reply_received", mail.subject[:200])
    dossier.updated_at = at
    session.add(dossier)
    return Change(tuple(events), form, previous)


def _record_forms(session: Session, dossier: Dossier, mail: ParsedMail, reading: Reading, message_pk: int,
                  at: dt.datetime) -> FormCheck | None:
    """Store every usable form check; the dossier follows the last one."""
    latest = None
    for doc in reading.of("order_form"):
        if doc.check is None or not doc.usable:
            continue
        check = doc.check
        problems = [[p.field, p.code, p.message] for p in check.problems]
        session.add(FormCheckRecord(message_pk=message_pk, dossier_id=dossier.id, filename=check.file,
                                    sha256=mail.attachments[doc.index].sha256, complete=check.complete, language=check.language,
                                    version=check.version, problems=json.dumps(problems, ensure_ascii=False),
                                    values=json.dumps(check.values, ensure_ascii=False, default=str),
                                    checked_at=at))
        latest = check
    return latest


def _apply_form(session, dossier, form: FormCheck, at, settings, calendars, message_pk, event) -> None:
    values = form.values
    dossier.language = form.language or dossier.language
    dossier.organisation = values.get("legal_name") or dossier.organisation
    dossier.enterprise_number = values.get("enterprise_number") or dossier.enterprise_number
    for field_id, role in CONTACT_FIELDS.items():
        if values.get(field_id):
            link_contact(session, dossier, values[field_id], role)
    if form.complete:
        dossier.form_status = "complete"
        event("form_complete", form.file)
        deadlines.start(session, dossier, "prevalidation", at, settings, calendars, message_pk)
    else:
        was_complete = dossier.form_status == "complete"
        dossier.form_status = "incomplete"
        event("form_incomplete", ", ".join(f"{p.field}:{p.code}" for p in form.problems))
        if was_complete:
            # A form with problems stops the clock until the corrected one comes.
            deadlines.close(session, dossier, "prevalidation", "paused", at, message_pk,
                            "a new order form with problems replaced the complete one")


def _apply_staff(session, dossier, at, message_pk, party: str | None, event) -> None:
    """A staff mail in the dossier meets the deadline its party owes."""
    if party == "worldline":
        if dossier.form_status == "complete" and not dossier.prevalidated and \
                deadlines.open_deadline(session, dossier, "prevalidation") is not None:
            dossier.prevalidated = True
            event("prevalidated", "Worldline wrote to the client about the complete form")
            deadlines.close(session, dossier, "prevalidation", "met", at, message_pk, "a Worldline mail")
            return
        if dossier.signed_form_received and dossier.id_copy_received and not dossier.access_sent and \
                deadlines.open_deadline(session, dossier, "encoding") is not None:
            dossier.access_sent = True
            event("access_sent", "Worldline wrote after the signed form and the ID copy came")
            deadlines.close(session, dossier, "encoding", "met", at, message_pk, "a Worldline mail")
            return
    event("staff_mail", f"from {party or 'staff'}")


STEPS_A_PERSON_MARKS = ("prevalidated", "access_sent")


def mark_done(session: Session, dossier: Dossier, step: str, at: dt.datetime, who: str) -> str:
    """A person marks a step done (Worldline confirmed by phone, say): the deadline is met."""
    if step == "prevalidated":
        if dossier.prevalidated:
            return "already prevalidated"
        dossier.prevalidated = True
        deadlines.close(session, dossier, "prevalidation", "met", at, None, f"marked done by {who}")
    elif step == "access_sent":
        if dossier.access_sent:
            return "production access already sent"
        dossier.access_sent = True
        deadlines.close(session, dossier, "encoding", "met", at, None, f"marked done by {who}")
    else:
        raise ValueError(f"unknown step {step!r}: one of {', '.join(STEPS_A_PERSON_MARKS)}")
    session.add(Event(dossier_id=dossier.id, at=at, kind=step, detail=f"marked done by {who}"))
    dossier.updated_at = at
    session.add(dossier)
    return f"{dossier.reference}: {step.replace('_', ' ')}, marked by {who}"
