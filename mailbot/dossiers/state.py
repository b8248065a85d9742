"""What a dossier is waiting for, and from whom (pure, derived from its flags)."""

from __future__ import annotations

from dataclasses import dataclass

from mailbot.mail.documents import Step
from mailbot.store.models import Dossier


@dataclass(frozen=True)
class Wait:
    party: str  # client | worldline | bosa
    what: str  # order_form | corrected_order_form | prevalidation | convention | signed_order_form | id_copy | encoding


def waiting_for(d: Dossier) -> tuple[Wait, ...]:
    waits: list[Wait] = []
    if d.access_sent:
        return ()
    if d.form_status in ("none", "attempted"):
        waits.append(Wait("client", "order_form"))
    elif d.form_status == "incomplete":
        waits.append(Wait("client", "corrected_order_form"))
    elif not d.prevalidated:
        waits.append(Wait("worldline", "prevalidation"))
    if not d.convention_received:
        waits.append(Wait("client", "convention"))
    # The signed scan and the ID copy are asked for once Worldline has confirmed the form
    # (step 5); they are accepted earlier all the same.
    if d.form_status == "complete" and (d.prevalidated or d.signed_form_received or d.id_copy_received):
        if not d.signed_form_received:
            waits.append(Wait("client", "signed_order_form"))
        if not d.id_copy_received:
            waits.append(Wait("client", "id_copy"))
        if d.signed_form_received and d.id_copy_received:
            waits.append(Wait("worldline", "encoding"))
    return tuple(waits)


def stage(d: Dossier) -> str:
    """The furthest step reached, as one word for lists and digests."""
    if d.access_sent:
        return "access_sent"
    if d.signed_form_received and d.id_copy_received:
        return "signed_received"
    if d.prevalidated:
        return "prevalidated"
    return {"none": "opened", "attempted": "form_unusable", "incomplete": "form_incomplete",
            "complete": "form_complete"}[d.form_status]


def document_step(d: Dossier | None) -> Step:
    if d is None:
        return Step(wants_convention=True)
    complete = d.form_status == "complete"
    return Step(form_complete=complete,
                wants_signed_form=complete and not d.signed_form_received,
                wants_id_copy=complete and not d.id_copy_received,
                wants_convention=not d.convention_received)
