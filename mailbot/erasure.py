"""`mailbot forget ADDRESS`: an erasure request (GDPR art. 17) carried out in the database.

The address is compared normalised (case, Unicode NFC, punycode) and removed everywhere:
the dossiers' contacts are deleted, a mail's sender is cleared, form values naming it (with
that contact's name and phone) and every other text or JSON column mentioning it are
rewritten, and the answers not yet sent to it are cancelled. Columns that identify a mail
(Message-IDs, keys, hashes) are left alone: rewriting them would let a mail be answered twice.

Each dossier touched gets an "address_erased" event that proves the erasure happened (its
date, an erasure number to quote to the person, what was removed) without the address: a
hash of an address can be reversed by trying addresses, so none is kept.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import String
from sqlmodel import Session, SQLModel, col, select

from mailbot.addresses import normalise_address, replace_in_stored, replace_in_text
from mailbot.errors import NotAnAddress
from mailbot.store.models import Contact, Event, FormCheckRecord, Message, OutboxMail

ERASED = "[erased]"
ERASURE_EVENT = "address_erased"
# Identifiers, not descriptions: dedup and threading depend on them.
IDENTIFIERS = frozenset({
    ("message", "key"), ("message", "message_id"), ("message", "content_hash"), ("outbox", "message_id"),
    ("outbox", "in_reply_to"), ("outbox", "references"), ("attachment", "sha256"), ("form_check", "sha256"),
    ("dossier", "reference"),
})
# A contact's e-mail field in the order form, and the fields that describe the same person.
SAME_PERSON = {"business_contact_email": ("business_contact_name", "business_contact_phone"),
               "technical_contact_email": ("technical_contact_name", "technical_contact_phone"),
               "billing_email": ()}


@dataclass
class Erasure:
    """What one erasure request changed."""
    number: str  # quoted to the person and kept in the events
    at: dt.datetime
    changes: Counter = field(default_factory=Counter)  # "what" -> rows
    dossiers: dict[int, Counter] = field(default_factory=dict)  # dossier id -> what -> rows
    in_flight: int = 0  # outbox mails already being sent to the address: not stoppable here

    def count(self, what: str, dossier_id: int | None, n: int = 1) -> None:
        self.changes[what] += n
        if dossier_id is not None:
            self.dossiers.setdefault(dossier_id, Counter())[what] += n


def _summary(counts: Counter) -> str:
    return ", ".join(f"{what} ({n})" for what, n in sorted(counts.items())) or "nothing"


def forget(session: Session, address: str, now: dt.datetime, number: str | None = None,
           own: frozenset[str] = frozenset()) -> Erasure:
    """Erase `address` everywhere in the caller's transaction (the caller commits or rolls back).
    `own`: the watched mailboxes' addresses, which are not a person's and are refused."""
    target = normalise_address(address)
    local, _, domain = target.rpartition("@")
    if not local or not domain or any(c.isspace() for c in target):
        raise NotAnAddress(f"{address!r} is not an e-mail address")
    if target in {normalise_address(a) for a in own}:
        raise NotAnAddress(f"{address} is a watched mailbox of the bot, not a person's address")

    def is_target(found: str) -> bool:
        return normalise_address(found) == target

    erasure = Erasure(number or uuid.uuid4().hex[:12], now)
    dossier_of_message = {m: d for m, d in session.exec(select(Message.id, Message.dossier_id)) if m is not None}
    for contact in session.exec(select(Contact)):
        if is_target(contact.email):
            session.delete(contact)
            erasure.count("contact links", contact.dossier_id)
    for msg in session.exec(select(Message).where(col(Message.sender).is_not(None))):
        if msg.sender and is_target(msg.sender):
            msg.sender = None
            session.add(msg)
            erasure.count("mail senders", msg.dossier_id)
    for form in session.exec(select(FormCheckRecord)):
        if _erase_form_values(form, is_target):
            session.add(form)
            erasure.count("order form values", form.dossier_id or dossier_of_message.get(form.message_pk))
    for row in session.exec(select(OutboxMail).where(col(OutboxMail.state).in_(("pending", "sending", "handed")))):
        if any(is_target(a) for a in json.loads(row.recipients) + json.loads(row.cc)):
            if row.state == "pending":
                row.state, row.last_error = "failed", f"cancelled: erasure {erasure.number}"
                session.add(row)
                erasure.count("answers cancelled", row.dossier_id)
            else:
                erasure.in_flight += 1
    session.flush()
    _erase_in_every_text_column(session, is_target, erasure, dossier_of_message)
    for dossier_id, counts in erasure.dossiers.items():
        session.add(Event(dossier_id=dossier_id, at=now, kind=ERASURE_EVENT,
                          detail=f"erasure {erasure.number}: an address erased at its holder's request "
                                 f"({_summary(counts)})"))
    return erasure


def _erase_form_values(form: FormCheckRecord, is_target) -> bool:
    values = json.loads(form.values or "{}")
    changed = False
    for name, value in list(values.items()):
        if not isinstance(value, str):
            continue
        new, n = replace_in_text(value, is_target, ERASED)
        if n:
            values[name] = new
            changed = True
            for other in SAME_PERSON.get(name, ()):
                if values.get(other) not in (None, ""):
                    values[other] = ERASED
    if changed:
        form.values = json.dumps(values, ensure_ascii=False)
    return changed


def _erase_in_every_text_column(session: Session, is_target, erasure: Erasure,
                                dossier_of_message: dict[int, int | None]) -> None:
    """Every text column of every table (the tables other modules add too), but identifiers."""
    for table in SQLModel.metadata.sorted_tables:
        columns = [c for c in table.columns if _is_text(c) and (table.name, c.name) not in IDENTIFIERS]
        keys = list(table.primary_key.columns)
        if not columns or len(keys) != 1:
            continue
        key = keys[0]
        connection = session.connection()
        for row in connection.execute(select(key, *columns, *_owner_columns(table))).mappings().all():
            updates = {}
            for column in columns:
                value = row[column.name]
                if isinstance(value, str) and value:
                    new, n = replace_in_stored(value, is_target, ERASED)
                    if n:
                        updates[column.name] = new
            if updates:
                connection.execute(table.update().where(key == row[key.name]).values(**updates))
                erasure.count(f"{table.name} texts", _owner(table.name, row, dossier_of_message))


def _is_text(column) -> bool:
    kind = getattr(column.type, "impl_instance", column.type)  # SQLModel's AutoString decorates String
    return isinstance(kind, String) and not column.primary_key


def _owner_columns(table) -> list:
    """The columns that say which dossier a row belongs to (directly or through its mail)."""
    return [table.c[name] for name in ("dossier_id", "message_pk") if name in table.c and name != "id"]


def _owner(table: str, row, dossier_of_message: dict[int, int | None]) -> int | None:
    if table == "dossier":
        return row["id"]
    if row.get("dossier_id") is not None:
        return row["dossier_id"]
    return dossier_of_message.get(row.get("message_pk"))


def render_erasure(erasure: Erasure, references: dict[int, str], applied: bool) -> str:
    head = (f"erasure {erasure.number} at {erasure.at.isoformat(timespec='seconds')}"
            + ("" if applied else ": dry run, nothing changed"))
    lines = [head, f"  changed: {_summary(erasure.changes)}"]
    for dossier_id, counts in sorted(erasure.dossiers.items()):
        lines.append(f"  {references.get(dossier_id, dossier_id)}: {_summary(counts)}"
                     + (f"; event {ERASURE_EVENT} recorded" if applied else ""))
    if not erasure.dossiers and erasure.changes:
        lines.append("  (in no dossier: no event to record it; keep this receipt)")
    if erasure.in_flight:
        lines.append(f"  {erasure.in_flight} answer(s) to the address were being sent and could not be stopped")
    return "\n".join(lines)
