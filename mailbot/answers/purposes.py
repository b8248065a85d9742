"""Why the bot writes a mail: one purpose, one template per language (templates/<purpose>.*)."""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    """The values are stored in the outbox and the decisions, and name the templates."""
    # to the client, answering a mail
    FORM_COMPLETE = "form_complete"
    FORM_INCOMPLETE = "form_incomplete"
    FORM_MISSING = "form_missing"
    SIGNED_RECEIVED = "signed_received"
    SIGNED_INCOMPLETE = "signed_incomplete"
    # an order form changing payment details or contacts, held for a person: to the dossier's
    # linked contacts (fr/nl, the IBAN masked) and to staff (en, in full)
    CHANGE_TO_CONFIRM = "change_to_confirm"
    # to staff, about a mail
    NEEDS_HUMAN = "needs_human"
    # the scheduled ones
    REMINDER = "reminder"
    WARNING = "warning"
    ESCALATION = "escalation"
    DIGEST = "digest"
    WATCHDOG = "watchdog"
