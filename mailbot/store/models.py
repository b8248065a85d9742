"""The database tables (SQLModel). The schema is managed by the Alembic migrations beside.

Only metadata and hashes of attachments are stored, never their bytes (identity cards are
personal data).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out, on every database (SQLite keeps no zone)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: mailbot stores aware times only")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _utc() -> Column:
    return Column(UTCDateTime(), nullable=False)


def _utc_null() -> Column:
    return Column(UTCDateTime(), nullable=True)


class Dossier(SQLModel, table=True):
    """One client project going through the six steps."""
    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(unique=True, index=True)  # EPAY-2026-0042
    project_name: str
    project_key: str = Field(index=True)
    organisation: str | None = None
    enterprise_number: str | None = Field(default=None, index=True)
    language: str | None = None  # fr | nl, from the form, the subject or the mail
    # The process as flags, since steps overlap (the convention comes in parallel).
    form_status: str = "none"  # none | attempted | incomplete | complete
    convention_received: bool = False
    prevalidated: bool = False
    signed_form_received: bool = False
    id_copy_received: bool = False
    access_sent: bool = False
    bosa_copy_missing: bool = False  # an order form came without BOSA in copy
    # Reminders stopped (each owed document reminded `answers.max_reminders` times, or nobody who
    # wrote to remind): the digest lists the dossier for a person. Cleared when reminders may
    # go again (the client moved, another document is owed). Migration 0007.
    dormant_since: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    opened_at: dt.datetime = Field(sa_column=_utc())
    updated_at: dt.datetime = Field(sa_column=_utc())


class Contact(SQLModel, table=True):
    """An address of a dossier. Only a linked one may receive its details (and reminders): the
    sender who opened it, a colleague who wrote, or an address a person confirmed. The addresses
    an order form merely names are contacts of record, not linked (migration 0006)."""
    __table_args__ = (UniqueConstraint("dossier_id", "email"),)
    id: int | None = Field(default=None, primary_key=True)
    dossier_id: int = Field(foreign_key="dossier.id", index=True)
    email: str = Field(index=True)
    role: str  # sender | colleague | business | technical | billing
    linked: bool = False


class Message(SQLModel, table=True):
    """One mail, however many mailboxes it was seen in. Recorded before it is acted on."""
    # The digest lists the mail received since the previous business day (migration 0004).
    # The staff page lists the quarantine (migration 0011).
    __table_args__ = (Index("ix_message_received_at", "received_at"), Index("ix_message_status", "status"))
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True)  # "mid:<message-id>" or "hash:<sha256>"
    message_id: str | None = Field(default=None, index=True)
    content_hash: str = Field(index=True)
    subject: str = ""
    sender: str | None = None
    sent_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())  # the Date header
    received_at: dt.datetime = Field(sa_column=_utc())  # first seen by the bot
    kind: str | None = None  # bounce | auto_reply | submission | staff | reply | unrelated
    kind_reason: str = ""
    kind_code: str | None = None  # which test gave the kind (mail/kinds.py KindCode)
    dossier_id: int | None = Field(default=None, foreign_key="dossier.id", index=True)
    unlinked_sender: bool = False  # in a dossier's thread but from an address not linked to it
    # Whether the mail is from its From address (mailbot/trust.py): the SenderAuth's status
    # ("" for mail recorded before it was checked), whether it counts, and why, for staff.
    sender_auth: str = ""
    sender_authenticated: bool = False
    sender_auth_reason: str = ""
    documents: str = ""  # comma-separated document kinds found
    defects: str = ""  # the parser's defects, "; "-separated
    status: str = "received"  # received | processed | quarantined
    status_reason: str = ""
    attempts: int = 0


class Sighting(SQLModel, table=True):
    """Where a message was seen: mailbox, folder and, on IMAP, UIDVALIDITY and UID."""
    __table_args__ = (
        UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
        Index("ix_sighting_message_place", "message_pk", "mailbox", "folder"),
    )
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    mailbox: str  # worldline | bosa
    folder: str  # INBOX | Sent | ...
    uidvalidity: int | None = None
    uid: int | None = None
    seen_at: dt.datetime = Field(sa_column=_utc())


class AttachmentRecord(SQLModel, table=True):
    __tablename__ = "attachment"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    filename: str
    content_type: str
    size: int
    sha256: str = Field(index=True)
    origin: str = "direct"
    document: str | None = None  # order_form | convention | signed_order_form | id_copy
    reason: str = ""  # why it was classified so


class FormCheckRecord(SQLModel, table=True):
    __tablename__ = "form_check"
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int = Field(foreign_key="message.id", index=True)
    dossier_id: int | None = Field(default=None, foreign_key="dossier.id", index=True)
    filename: str
    sha256: str
    complete: bool
    language: str | None = None
    version: str | None = None
    problems: str = "[]"  # JSON [[field, code, message], ...]
    values: str = "{}"  # JSON {field: normalised value}
    checked_at: dt.datetime = Field(sa_column=_utc())


class Event(SQLModel, table=True):
    """The dossier's audit trail: every change with its time and cause."""
    id: int | None = Field(default=None, primary_key=True)
    dossier_id: int = Field(foreign_key="dossier.id", index=True)
    at: dt.datetime = Field(sa_column=_utc())
    kind: str
    message_pk: int | None = Field(default=None, foreign_key="message.id")
    detail: str = ""


class PendingChange(SQLModel, table=True):
    """A later order form that changes payment details or contacts (forms/changes.py
    CONFIRMED_FIELDS) of a dossier that had a complete form: held, not applied, until a person
    confirms it (`mailbot mark REF confirm-changes`) or rejects it. The values are read from the
    two forms' records, so that this row holds no personal data of its own (migration 0006)."""
    __tablename__ = "pending_change"
    __table_args__ = (Index("ix_pending_change_dossier_state", "dossier_id", "state"),)
    id: int | None = Field(default=None, primary_key=True)
    dossier_id: int = Field(foreign_key="dossier.id")
    message_pk: int = Field(foreign_key="message.id")  # the mail whose order form is held
    form_check_id: int = Field(foreign_key="form_check.id")  # the held form
    base_form_check_id: int | None = Field(default=None, foreign_key="form_check.id")  # the form in force then
    fields: str  # comma-separated field ids, in the form's order
    state: str = "pending"  # pending | confirmed | rejected | superseded (a newer form came)
    created_at: dt.datetime = Field(sa_column=_utc())
    decided_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    decided_by: str = ""  # the person (confirmed, rejected) or "a newer order form"


class Deadline(SQLModel, table=True):
    __table_args__ = (Index("ix_deadline_open_due", "state", "due"),)
    id: int | None = Field(default=None, primary_key=True)
    dossier_id: int = Field(foreign_key="dossier.id", index=True)
    name: str  # prevalidation | encoding
    party: str  # the mailbox whose staff must act
    calendar: str
    started_at: dt.datetime = Field(sa_column=_utc())
    due: dt.date  # the last business day on which it is still met
    state: str = "open"  # open | met | paused | cancelled
    closed_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    warned_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    escalated_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())


class OutboxMail(SQLModel, table=True):
    """A mail the bot will send, written in the same transaction as the decision that made it.
    Its Message-ID is fixed in advance, so a crash can never send it twice unnoticed."""
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_state", "state", "id"),
        # The RFC 3834 limits count the last 24 hours' mail, per address and per dossier and
        # purpose; the reminders look up each dossier's last reminder (migration 0004).
        Index("ix_outbox_created_at", "created_at"),
        Index("ix_outbox_dossier_purpose", "dossier_id", "purpose", "created_at"),
        Index("ix_outbox_copy_owed", "copy_owed"),  # the sender looks for them when idle (0005)
    )
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True, index=True)  # without angle brackets
    purpose: str = Field(index=True)
    dossier_id: int | None = Field(default=None, foreign_key="dossier.id", index=True)
    cause_pk: int | None = Field(default=None, foreign_key="message.id")  # the mail it answers
    sender: str
    recipients: str  # JSON ["a@b", ...]
    cc: str = "[]"  # JSON
    subject: str
    language: str
    body_text: str
    body_html: str
    in_reply_to: str | None = None
    references: str = ""  # space-separated <ids>
    detail: str = "{}"  # JSON: problems, deadline and due day, for the timeline and the digest
    created_at: dt.datetime = Field(sa_column=_utc())
    not_before: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    # An OutboxState value; moved only by mailbot/outbox.py, which declares the transitions.
    state: str = "pending"
    attempts: int = 0
    last_error: str = ""
    sent_at: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    # Sent, but its copy is not in the sent folder yet (the IMAP server failed): appended later,
    # after a look whether an earlier try got there after all.
    copy_owed: bool = False


class OutboxAddress(SQLModel, table=True):
    """An address of an outbox mail, normalised (mailbot/addresses.py), for the limits to count
    by: its To and Cc, and for a staff note the sender of the mail it is about. One row per
    address; `created_at` is the mail's, so that the last 24 hours are read from the index."""
    __tablename__ = "outbox_address"
    __table_args__ = (Index("ix_outbox_address_address", "address", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    role: str  # to | cc | about
    address: str
    created_at: dt.datetime = Field(sa_column=_utc())


class Decision(SQLModel, table=True):
    """Why the bot answered a mail or not: which header, which rule, which limit."""
    id: int | None = Field(default=None, primary_key=True)
    message_pk: int | None = Field(default=None, foreign_key="message.id", index=True)
    dossier_id: int | None = Field(default=None, foreign_key="dossier.id", index=True)
    at: dt.datetime = Field(sa_column=_utc())
    purpose: str | None = None
    answered: bool
    reason: str


class FolderState(SQLModel, table=True):
    """What the IMAP watcher knows of one folder: UIDVALIDITY, the last UID done, the last
    contact with the server (for the watchdog and `mailbot status`)."""
    __tablename__ = "folder_state"
    __table_args__ = (UniqueConstraint("mailbox", "folder"),)
    id: int | None = Field(default=None, primary_key=True)
    mailbox: str
    folder: str
    uidvalidity: int | None = None
    last_uid: int = 0
    last_contact: dt.datetime | None = Field(default=None, sa_column=_utc_null())
    last_error: str = ""
    reported_down: bool = False  # the watchdog told staff; it tells them again on recovery


class Installation(SQLModel, table=True):
    """The bot's installation, one row: when the daemon first started on this database. Mail
    that reached the mailboxes before then is history, filed without answers (mailbot/history.py)."""
    id: int | None = Field(default=None, primary_key=True)
    first_started_at: dt.datetime = Field(sa_column=_utc())


class StaffAction(SQLModel, table=True):
    """What a person did on the staff page (mailbot/web): who, when, on what. A change to a
    dossier is also in its events; this table also holds what concerns no dossier (a mail let
    out of the quarantine, a failed answer sent again, a mail a person has dealt with) (0011)."""
    __tablename__ = "staff_action"
    __table_args__ = (Index("ix_staff_action_message", "message_pk", "action"),)
    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(sa_column=_utc())
    who: str  # the signed-in staff member's address
    action: str  # a web/actions.py Action value
    dossier_id: int | None = Field(default=None, foreign_key="dossier.id", index=True)
    message_pk: int | None = Field(default=None, foreign_key="message.id")
    outbox_id: int | None = Field(default=None, foreign_key="outbox.id")
    detail: str = ""
