"""Move a dossier along the process for one understood mail: flags, contacts, events, deadlines.

Every change is an event with its time and cause: the audit trail a person reads to see why
the bot did what it did.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session, col, func, select

from mailbot.addresses import normalise_address
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers import deadlines
from mailbot.forms import FormCheck
from mailbot.forms.changes import CONFIRMED_FIELDS, FieldChange, changes_to_confirm, compare
from mailbot.mail.documents import Reading
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo, project_key
from mailbot.store.models import Contact, Dossier, Event, FormCheckRecord, Message, PendingChange

CONTACT_FIELDS = {"business_contact_email": "business", "technical_contact_email": "technical",
                  "billing_email": "billing"}


@dataclass(frozen=True)
class HeldChange:
    """An order form recorded but not applied: it changes what a person must confirm first."""
    changes: tuple[FieldChange, ...]
    sender: str | None  # the address it came from


@dataclass(frozen=True)
class Change:
    """What one mail did to its dossier (for the answers that follow)."""
    events: tuple[str, ...]
    form: FormCheck | None  # the order form checked in this mail, if any
    previous_form: FormCheck | None  # the dossier's form in force before this one, for "what changed"
    held: HeldChange | None = None  # `form` is held until a person confirms it


def new_reference(session: Session, prefix: str, at: dt.datetime) -> str:
    year = at.year
    like = f"{prefix}-{year}-%"
    count = session.exec(select(func.count()).select_from(Dossier).where(col(Dossier.reference).like(like))).one()
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
    assert dossier.id is not None  # given by the flush
    session.add(Event(dossier_id=dossier.id, at=at, kind="dossier_opened", message_pk=message_pk,
                      detail=f"project {name!r} from {mail.sender or 'an unknown sender'}"))
    return dossier


def new_dossier_limit(session: Session, sender: str | None, at: dt.datetime, limit: int) -> str | None:
    """Why a mail from `sender` may not open one more dossier (it opened `limit` in the last 24
    hours, its address compared normalised; mail with no usable sender counts as one sender),
    or None."""
    since = at - dt.timedelta(days=1)
    openers = session.exec(select(Message.sender).join(Event, col(Event.message_pk) == Message.id)
                           .join(Dossier, col(Dossier.id) == Event.dossier_id)
                           .where(Dossier.opened_at > since, Event.kind == "dossier_opened")).all()
    who = normalise_address(sender) if sender else None
    if sum(1 for s in openers if (normalise_address(s) if s else None) == who) >= limit:
        return (f"limit: {limit} dossiers opened for {sender or 'mail with no usable sender'} in the last 24 hours; "
                "filed in no dossier")
    return None


def _contacts(session: Session, dossier: Dossier) -> set[str]:
    """The dossier's linked addresses, normalised (one person however the address is written),
    read once per session (a mail's transaction) and kept up to date by link_contact: a mail
    asks about them several times. Contacts of record (named in a form only) are not among them."""
    known = session.info.setdefault("contacts", {})
    if dossier.id not in known:
        known[dossier.id] = {normalise_address(e) for e in
                             session.exec(select(Contact.email).where(Contact.dossier_id == dossier.id,
                                                                      Contact.linked == True))}  # noqa: E712
    return known[dossier.id]


def _contact(session: Session, dossier: Dossier, email: str) -> Contact | None:
    return session.exec(select(Contact).where(Contact.dossier_id == dossier.id, Contact.email == email)).first()


def link_contact(session: Session, dossier: Dossier, email: str, role: str) -> bool:
    """Link `email` to the dossier: it may receive the dossier's details and reminders. Only for
    an address that wrote to the dossier (its sender, a colleague) or that a person confirmed.
    A contact of record keeps its role. True when the address was not linked before."""
    email = email.lower()
    contacts = _contacts(session, dossier)
    if normalise_address(email) in contacts:
        return False
    assert dossier.id is not None  # flushed when it was opened
    row = _contact(session, dossier, email)
    if row is None:
        session.add(Contact(dossier_id=dossier.id, email=email, role=role, linked=True))
    else:
        row.linked = True
        session.add(row)
    contacts.add(normalise_address(email))
    return True


def record_contact(session: Session, dossier: Dossier, email: str, role: str) -> bool:
    """An address an order form names (business, technical, billing): a contact of record, kept
    with its role but not linked, so that naming an address in a form earns it nothing. True
    when it is new to the dossier."""
    email = email.lower()
    if email in _contacts(session, dossier) or _contact(session, dossier, email) is not None:
        return False
    assert dossier.id is not None  # flushed when it was opened
    session.add(Contact(dossier_id=dossier.id, email=email, role=role, linked=False))
    return True


def linked_contacts(session: Session, dossier: Dossier) -> list[str]:
    """The linked addresses, the first linked (the sender who opened the dossier) first."""
    return list(session.exec(select(Contact.email).where(Contact.dossier_id == dossier.id,
                                                         Contact.linked == True)  # noqa: E712
                             .order_by(col(Contact.id))))


# Contacts who wrote to the dossier themselves (authenticated), not merely named in a form:
# only their domain makes an organisation's colleagues, and only they claim a project by name.
WRITING_ROLES = ("sender", "colleague")


def writers(session: Session, dossier: Dossier) -> set[str]:
    """Their addresses, normalised (one person however the address is written)."""
    return {normalise_address(e) for e in session.exec(select(Contact.email).where(
        Contact.dossier_id == dossier.id, col(Contact.role).in_(WRITING_ROLES)))}


def is_colleague(session: Session, dossier: Dossier, email: str, is_free_mail: Callable[[str], bool]) -> bool:
    """At the organisation's own domain: the exact domain of a contact who wrote to the dossier,
    never a free-mail provider's (anyone can open an address there). The caller makes sure the
    sender is authenticated."""
    domain = normalise_address(email).rpartition("@")[2]
    if not domain or is_free_mail(domain):
        return False
    return any(e.rpartition("@")[2] == domain for e in writers(session, dossier))


def record_unlinked(session: Session, dossier: Dossier, reading: Reading, message_pk: int, at: dt.datetime,
                    why: str = "") -> None:
    """A stranger's (or an unauthenticated) mail in a dossier's thread: kept for staff, but it
    changes nothing (no form, no contact, no step), so that nobody takes a dossier over by
    writing into its thread. `why`: the sender authentication's reason, when that is the cause."""
    docs = ", ".join(reading.kinds) or "no document"
    assert dossier.id is not None  # flushed when it was opened
    who = f"from a sender not authenticated: {why}" if why else "from a sender not linked to the dossier"
    session.add(Event(dossier_id=dossier.id, at=at, kind="unlinked_sender_mail", message_pk=message_pk,
                      detail=f"{who} ({docs}); a person decides"[:1000]))


def record_forward(session: Session, dossier: Dossier, forwarded, message_pk: int, at: dt.datetime) -> None:
    """A client's mail that staff forwarded (mail/forwards.py ForwardedClient): the dossier keeps
    who forwarded it and how."""
    assert dossier.id is not None  # read back or flushed
    session.add(Event(dossier_id=dossier.id, at=at, kind=f"forwarded_by_{forwarded.by}", message_pk=message_pk,
                      detail=f"the mail of {forwarded.client.email} forwarded by {forwarded.forwarder} "
                             f"({'as an attached message' if forwarded.how == 'attached' else 'inline'})"))


def is_linked(session: Session, dossier: Dossier, email: str | None) -> bool:
    return bool(email) and normalise_address(email or "") in _contacts(session, dossier)


def _applied_forms(dossier: Dossier):
    """The dossier's order forms in force or once in force: all but those of a mail whose
    changes are held, rejected or superseded before a person confirmed them."""
    held = select(PendingChange.message_pk).where(PendingChange.dossier_id == dossier.id,
                                                  PendingChange.state != "confirmed")
    return select(FormCheckRecord).where(FormCheckRecord.dossier_id == dossier.id,
                                         col(FormCheckRecord.message_pk).not_in(held))


def as_check(row: FormCheckRecord) -> FormCheck:
    from mailbot.forms.checker import Problem

    problems = tuple(Problem(f, c, m) for f, c, m in json.loads(row.problems))
    return FormCheck(row.filename, row.complete, row.language, row.version, problems, json.loads(row.values))


def _last_form_row(session: Session, dossier: Dossier) -> FormCheckRecord | None:
    return session.exec(_applied_forms(dossier).order_by(col(FormCheckRecord.id).desc()).limit(1)).first()


def last_form(session: Session, dossier: Dossier) -> FormCheck | None:
    """The order form in force: the dossier's last form, unless its changes wait for a person."""
    row = _last_form_row(session, dossier)
    return None if row is None else as_check(row)


def known_values(session: Session, dossier: Dossier) -> dict[str, object]:
    """Per field a person must confirm a change of, the value of the newest form in force that
    has one: a form that left the IBAN out by mistake does not make the next one a change."""
    out: dict[str, object] = {}
    for row in session.exec(_applied_forms(dossier).order_by(col(FormCheckRecord.id).desc())):
        values = json.loads(row.values)
        for name in CONFIRMED_FIELDS:
            if name not in out and values.get(name) not in (None, ""):
                out[name] = values[name]
        if len(out) == len(CONFIRMED_FIELDS):
            break
    return out


def pending_change(session: Session, dossier: Dossier) -> PendingChange | None:
    """The changes waiting for a person, if any (one at most: a newer form supersedes them)."""
    return session.exec(select(PendingChange).where(PendingChange.dossier_id == dossier.id,
                                                    PendingChange.state == "pending")
                        .order_by(col(PendingChange.id).desc()).limit(1)).first()


def apply_mail(session: Session, dossier: Dossier, *, mail: ParsedMail, kind: str, reading: Reading,
               at: dt.datetime, settings: Settings, calendars: dict[str, BusinessCalendar],
               message_pk: int, staff_party: str | None, inboxes: tuple[str, ...]) -> Change:
    events: list[str] = []

    def event(name: str, detail: str = "") -> None:
        events.append(name)
        assert dossier.id is not None  # flushed when it was opened
        session.add(Event(dossier_id=dossier.id, at=at, kind=name, message_pk=message_pk, detail=detail))

    # What is in force before this mail's forms are recorded: the changes are measured against it.
    previous_row = _last_form_row(session, dossier) if reading.of("order_form") else None
    previous = as_check(previous_row) if previous_row is not None else None
    known = known_values(session, dossier) if previous_row is not None else {}
    had_complete = previous_row is not None and _had_complete_form(session, dossier)
    form, record = _record_forms(session, dossier, mail, reading, message_pk, at)
    held = None
    if form is not None:
        if previous is not None and (changes := compare(previous, form)):
            event("form_changed", changes.summary())
        _supersede(session, dossier, at, event)
        to_confirm = changes_to_confirm(known, form) if had_complete else ()
        if to_confirm:
            assert record is not None  # recorded with the form
            held = _hold(session, dossier, record, previous_row, to_confirm, mail.sender, at, message_pk, event)
        else:
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
    return Change(tuple(events), form, previous, held)


def _had_complete_form(session: Session, dossier: Dossier) -> bool:
    complete = _applied_forms(dossier).where(FormCheckRecord.complete == True)  # noqa: E712
    return session.exec(complete.limit(1)).first() is not None


def _hold(session: Session, dossier: Dossier, record: FormCheckRecord, base: FormCheckRecord | None,
          changes: tuple[FieldChange, ...], sender: str | None, at: dt.datetime, message_pk: int,
          event) -> HeldChange:
    """Record the form's changes for a person to confirm; the dossier keeps the form in force."""
    session.flush()  # the record's id
    assert dossier.id is not None and record.id is not None  # given by the flush
    fields = [c.field for c in changes]
    session.add(PendingChange(dossier_id=dossier.id, message_pk=message_pk, form_check_id=record.id,
                              base_form_check_id=base.id if base is not None else None, fields=",".join(fields),
                              created_at=at))
    event("changes_held", f"{', '.join(fields)} changed by an order form from {sender or 'an unknown sender'}: "
                          f"the dossier keeps the earlier values until a person confirms "
                          f"(mailbot mark {dossier.reference} confirm-changes)")
    return HeldChange(changes, sender)


def _supersede(session: Session, dossier: Dossier, at: dt.datetime, event) -> None:
    """A newer order form replaces the changes waiting for a person: the newer one is measured
    against the form in force, and held in turn if it changes what must be confirmed."""
    for change in session.exec(select(PendingChange).where(PendingChange.dossier_id == dossier.id,
                                                           PendingChange.state == "pending")):
        change.state, change.decided_at, change.decided_by = "superseded", at, "a newer order form"
        session.add(change)
        event("changes_superseded",
              f"the held changes ({change.fields.replace(',', ', ')}) replaced by a newer order form")


def _record_forms(session: Session, dossier: Dossier, mail: ParsedMail, reading: Reading, message_pk: int,
                  at: dt.datetime) -> tuple[FormCheck | None, FormCheckRecord | None]:
    """Store every usable form check; the dossier follows the last one."""
    latest, record = None, None
    for doc in reading.of("order_form"):
        if doc.check is None or not doc.usable:
            continue
        check = doc.check
        problems = [[p.field, p.code, p.message] for p in check.problems]
        record = FormCheckRecord(message_pk=message_pk, dossier_id=dossier.id, filename=check.file,
                                 sha256=mail.attachments[doc.index].sha256, complete=check.complete,
                                 language=check.language,
                                 version=check.version, problems=json.dumps(problems, ensure_ascii=False),
                                 values=json.dumps(check.values, ensure_ascii=False, default=str),
                                 checked_at=at)
        session.add(record)
        latest = check
    return latest, record


def _apply_form(session, dossier, form: FormCheck, at, settings, calendars, message_pk, event) -> None:
    values = form.values
    dossier.language = form.language or dossier.language
    dossier.organisation = values.get("legal_name") or dossier.organisation
    dossier.enterprise_number = values.get("enterprise_number") or dossier.enterprise_number
    for field_id, role in CONTACT_FIELDS.items():
        if values.get(field_id):
            record_contact(session, dossier, values[field_id], role)
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
    """A staff mail in the dossier meets the deadline its party owes. `party` comes only with a
    mail found in a watched mailbox's Sent folder or authenticated from a staff address
    (mailbot/trust.py): a forged staff mail is no staff mail and never gets here."""
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


STEPS_A_PERSON_MARKS = ("prevalidated", "access_sent", "confirm-changes", "reject-changes")


def mark_done(session: Session, dossier: Dossier, step: str, at: dt.datetime, who: str, *,
              settings: Settings | None = None, calendars: dict[str, BusinessCalendar] | None = None) -> str:
    """A person marks a step done (Worldline confirmed by phone, say): the deadline is met; or
    decides on the changes an order form waits with (`settings` and `calendars` needed then)."""
    if step in ("confirm-changes", "reject-changes"):
        if settings is None or calendars is None:
            raise ValueError(f"{step} needs the settings and the calendars")
        return decide_changes(session, dossier, step == "confirm-changes", at, who, settings, calendars)
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
    assert dossier.id is not None  # read back
    session.add(Event(dossier_id=dossier.id, at=at, kind=step, detail=f"marked done by {who}"))
    dossier.updated_at = at
    session.add(dossier)
    return f"{dossier.reference}: {step.replace('_', ' ')}, marked by {who}"


def decide_changes(session: Session, dossier: Dossier, confirm: bool, at: dt.datetime, who: str, settings: Settings,
                   calendars: dict[str, BusinessCalendar]) -> str:
    """A person confirms the held changes (the form comes into force as if it had just come, and
    the contact addresses it changed are linked: a person vouched for them) or rejects them
    (the dossier keeps the form in force). Only `mailbot mark` does this, never a mail: a
    forged mail is exactly what the hold is for."""
    change = pending_change(session, dossier)
    if change is None:
        return f"{dossier.reference}: no changed payment details or contacts to confirm"
    fields = change.fields.replace(",", ", ")
    change.state = "confirmed" if confirm else "rejected"
    change.decided_at, change.decided_by = at, who
    session.add(change)

    assert dossier.id is not None  # a dossier read from the store
    dossier_id = dossier.id

    def event(name: str, detail: str = "") -> None:
        session.add(Event(dossier_id=dossier_id, at=at, kind=name, detail=detail))

    if confirm:
        event("changes_confirmed", f"{fields}: confirmed by {who}")
        record = session.get(FormCheckRecord, change.form_check_id)
        assert record is not None  # a pending change keeps its form record (foreign key)
        form = as_check(record)
        _apply_form(session, dossier, form, at, settings, calendars, None, event)
        for name in change.fields.split(","):
            if name in CONTACT_FIELDS and form.values.get(name):
                link_contact(session, dossier, form.values[name], CONTACT_FIELDS[name])
        done = "confirmed by {}: the order form that brought them is in force"
    else:
        event("changes_rejected", f"{fields}: rejected by {who}; the dossier keeps the earlier values")
        done = "rejected by {}: the dossier keeps the earlier values"
    dossier.updated_at = at
    session.add(dossier)
    return f"{dossier.reference}: changes to {fields} " + done.format(who)
