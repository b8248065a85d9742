"""Which answers one understood mail calls for, to whom, and with what (pure).

An ordered chain of rules, like policy.py's: each looks at the case (the understanding, and the
facts read from the store before: answers/facts.py) and decides, or leaves it to the next:

    robot mail -> a forward whose client is unknown -> forged staff mail -> staff mail
    -> unrelated mail -> must not answer (policy.py) -> stranger -> a client's question -> an echo
    of the bot's own answer -> the documents' answers

A client's mail that staff forwarded (mail/forwards.py) is decided as the client's own; its
answers go to the client with BOSA in copy.

Privacy: dossier details go only to addresses linked to the dossier (the original sender, a
colleague who wrote, an address a person confirmed; not the contacts an order form merely names),
and only when the mail is authenticated as from its sender (mailbot/trust.py); anyone else gets
nothing, and staff get a `needs_human` note instead. An order form whose changes
are held for a person (dossiers/process.py) is told, whatever the rule that decides, to the
dossier's linked contacts and to staff: `held_change`. Rendering the intents into mails is
answers/drafts.py's job; queueing them, the pipeline's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from mailbot.answers.facts import Facts
from mailbot.answers.policy import echo_reason, no_answer_reason
from mailbot.answers.purposes import Purpose
from mailbot.answers.reasons import Reason
from mailbot.config import Settings
from mailbot.forms import FormCheck, FormRules
from mailbot.forms.changes import compare, mask_iban
from mailbot.mail.documents import DocumentRules
from mailbot.mail.kinds import Kind, KindCode
from mailbot.mail.robots import RobotRules
from mailbot.understanding import Understanding


@dataclass(frozen=True)
class Silence:
    """A decision not to answer, with its reason."""
    reason: str


@dataclass(frozen=True)
class Answer:
    """An answer of `purpose` to the client who wrote (`to`), BOSA in copy or not."""
    purpose: Purpose
    to: str
    cc_bosa: bool
    data: Mapping[str, Any]  # what its template shows, besides the dossier and the time
    detail: Mapping[str, Any] = field(default_factory=dict)  # recorded with the outbox mail
    also_to: tuple[str, ...] = ()  # more linked contacts, in the same mail


@dataclass(frozen=True)
class StaffNote:
    """A note to the staff of `team` (the watched mailbox the mail came into, for `needs_human`);
    its reason is rendered in the team's language (answers/reasons.py; a plain text as it is)."""
    team: str
    reason: Reason | str
    purpose: Purpose = Purpose.NEEDS_HUMAN
    data: Mapping[str, Any] = field(default_factory=dict)  # what a purpose other than needs_human shows


Intent = Silence | Answer | StaffNote


@dataclass(frozen=True)
class Case:
    """All a decision is made from."""
    understanding: Understanding
    facts: Facts
    raw: bytes | None  # the mail as received (policy.py reads delivery reports in it)
    settings: Settings
    form_rules: FormRules
    document_rules: DocumentRules
    robot_rules: RobotRules


Rule = Callable[[Case], tuple[Intent, ...] | None]  # None: not this rule's case, ask the next


def robot_mail(c: Case) -> tuple[Intent, ...] | None:
    u = c.understanding
    if u.kind in (Kind.BOUNCE, Kind.AUTO_REPLY):
        return (Silence(f"{u.kind}: {u.kind_reason}"),)
    return None


def forged_staff(c: Case) -> tuple[Intent, ...] | None:
    """A mail in a staff address's name that nothing vouches for: it changed nothing; staff see it."""
    u = c.understanding
    party = c.settings.mailbox_of(u.mail.sender) if u.mail.sender else None
    if party is None or u.sender_auth.authenticated:
        return None
    why = f"a mail in the name of {party} staff is not authenticated ({u.sender_auth.reason})"
    return (Silence(f"not authenticated: {why}"),
            StaffNote(team_of(c), f"{why}; it changed nothing and got no answer"))


def unclear_forward(c: Case) -> tuple[Intent, ...] | None:
    """Staff forwarded a mail whose client cannot be told: a person answers it."""
    fwd = c.understanding.forwarded
    if fwd is None or fwd.client is not None:
        return None
    return (Silence(f"a mail forwarded by {fwd.forwarder}: its client cannot be told ({fwd.problem})"),
            StaffNote(team_of(c), Reason(fwd.problem, {"forwarder": fwd.forwarder, "found": fwd.found})))


def staff_mail(c: Case) -> tuple[Intent, ...] | None:
    if c.understanding.kind == Kind.STAFF:
        return (Silence("a staff mail: staff answer clients themselves"),)
    return None


def unrelated_mail(c: Case) -> tuple[Intent, ...] | None:
    u = c.understanding
    if u.kind != Kind.UNRELATED:
        return None
    if u.kind_code != KindCode.NO_DOSSIER:  # list or bulk mail: the digest lists it, no note
        return (Silence(f"unrelated: {u.kind_reason}"),)
    return Silence("unrelated: in no dossier"), StaffNote(team_of(c), Reason("no_dossier"))


def must_not_answer(c: Case) -> tuple[Intent, ...] | None:
    if reason := no_answer_reason(c.understanding.mail, c.raw, c.settings, c.robot_rules):
        return (Silence(reason),)
    return None


def stranger(c: Case) -> tuple[Intent, ...] | None:
    # linked before this mail too: a stranger's order form that names the stranger as a contact
    # links them while the mail is applied, and must not earn them an answer at once
    u = c.understanding
    if not u.sender_auth.authenticated:
        where = "it changed no dossier" if u.dossier is not None else "it opened no dossier"
        return (Silence(f"privacy: the sender is not authenticated ({u.sender_auth.reason}): "
                        "treated as a stranger, no dossier details"),
                StaffNote(team_of(c), f"the sender is not authenticated ({u.sender_auth.reason}); "
                                      f"{where} and got no answer"))
    if u.dossier is not None and not u.unlinked_sender and c.facts.linked:
        return None
    who = "a sender not linked to the dossier" if u.dossier is not None else "a sender with no dossier"
    return (Silence(f"privacy: {who} gets no dossier details"),
            StaffNote(team_of(c), Reason("stranger_in_dossier" if u.dossier is not None else "stranger_no_dossier")))


def client_question(c: Case) -> tuple[Intent, ...] | None:
    if c.understanding.kind == Kind.REPLY:
        return (Silence("a client's question in a dossier: a person answers"),)
    return None


def echo(c: Case) -> tuple[Intent, ...] | None:
    """A reply to one of the bot's own answers that brings nothing new (policy.echo_reason)."""
    replied = c.facts.replied_to
    if replied is not None and (reason := echo_reason(c.understanding.mail, replied.purpose, replied.seconds,
                                                      c.document_rules, c.robot_rules)):
        return (Silence(reason),)
    return None


def documents(c: Case) -> tuple[Intent, ...]:
    """What the order form and the signed documents of a client's mail call for; always decides."""
    u = c.understanding
    out = [a for a in (form_answer(c), signed_answer(c)) if a is not None]
    if u.forwarded is not None:  # BOSA forwarded it: BOSA sees what its client is told
        out = [replace(a, cc_bosa=True) for a in out]
    return tuple(out) or (Silence("nothing to answer: " + (", ".join(u.reading.kinds) or "no document")),)


RULES: tuple[Rule, ...] = (robot_mail, unclear_forward, forged_staff, staff_mail, unrelated_mail, must_not_answer,
                           stranger,
                           client_question, echo, documents)


def decide(case: Case, rules: tuple[Rule, ...] = RULES) -> tuple[Intent, ...]:
    """The first rule that decides, decides; `documents`, last, always does. A held change is
    told whatever the rule (a staff or an auto-submitted mail may carry the form too)."""
    alerts = held_change(case)
    for rule in rules:
        if (intents := rule(case)) is not None:
            return (*intents, *alerts)
    return alerts


# The staff who hear of a held change: Worldline encodes the IBAN (BOSA sees it in its digest).
CHANGE_TEAM = "worldline"


def held_change(c: Case) -> tuple[Intent, ...]:
    """An order form that changes payment details or contacts and waits for a person: the
    dossier's linked contacts (never the addresses the form brings) hear what changed and from
    which address, the IBAN masked; staff get it in full, with the command that decides."""
    u = c.understanding
    change = u.change
    held = change.held if change is not None else None
    if change is None or held is None or change.form is None:
        return ()
    form = change.form
    lang = form.language or (u.dossier.language if u.dossier else None) or "fr"

    def rows(mask: bool) -> list[SimpleNamespace]:
        return [SimpleNamespace(field=ch.field, label=c.form_rules.label(ch.field, lang),
                                old=_shown(ch.field, ch.old, mask), new=_shown(ch.field, ch.new, mask))
                for ch in held.changes]

    fields = [ch.field for ch in held.changes]
    sender = held.sender or "(unknown)"
    problems = [p.message for p in form.problems]
    notified = list(c.facts.linked_contacts)
    staff = StaffNote(CHANGE_TEAM, f"an order form from {sender} changes {', '.join(fields)}; a person confirms",
                      Purpose.CHANGE_TO_CONFIRM, {"sender": sender, "filename": form.file, "changes": rows(False),
                                                  "problems": problems, "notified": notified})
    if not notified:
        return (staff,)
    client = Answer(Purpose.CHANGE_TO_CONFIRM, notified[0], False,
                    {"sender": sender, "filename": form.file, "changes": rows(True), "problems": problems},
                    {"fields": fields}, also_to=tuple(notified[1:]))
    return client, staff


def _shown(name: str, value: Any, mask: bool) -> str | None:
    if value is None or value == "":
        return None
    return mask_iban(value) if mask and name == "settlement_iban" else str(value)


def team_of(c: Case) -> str:
    """The watched mailbox whose staff hear of the mail: the first it came into."""
    return next((m for m in c.understanding.mailboxes if m in c.settings.mailboxes), "worldline")


def form_answer(c: Case) -> Answer | None:
    u = c.understanding
    dossier, change, to = u.dossier, u.change, u.mail.sender
    assert dossier is not None and to is not None  # `stranger` let through only a linked sender's mail
    form = change.form if change else None
    if change is not None and form is not None:
        # a held form is not in force: held_change tells of it instead
        return None if change.held is not None else _form_checked(c, form)
    attempts = u.reading.of("order_form")
    if attempts:
        check = next((d.check for d in attempts if d.check is not None), None)
        reason = "unreadable" if check is not None else "not_a_workbook"
        text = check.problems[0].message if check and check.problems else attempts[0].reason
        return Answer(Purpose.FORM_MISSING, to, True, {"reason": reason, "detail": text},
                      {"problems": [["form", check.problems[0].code]] if check and check.problems else []})
    if not u.reading.documents and dossier.form_status in ("none", "attempted"):
        return Answer(Purpose.FORM_MISSING, to, True, {"reason": "no_attachment", "detail": ""}, {})
    return None


def _form_checked(c: Case, form: FormCheck) -> Answer:
    u = c.understanding
    assert u.change is not None and u.dossier is not None and u.mail.sender is not None  # see form_answer
    previous = u.change.previous_form
    changes = compare(previous, form) if previous else None
    lang = form.language or "fr"
    changes_view = SimpleNamespace(**{k: [c.form_rules.label(f, lang) for f in getattr(changes, k)]
                                      for k in ("fixed", "still_wrong", "newly_wrong", "changed")}) \
        if changes else None
    detail: dict[str, Any] = {"problems": [[p.field, p.code] for p in form.problems]}
    if changes:
        detail["changes"] = changes.summary()
    if form.complete:
        return Answer(Purpose.FORM_COMPLETE, u.mail.sender, True,
                      {"filename": form.file, "convention_received": u.dossier.convention_received,
                       "prevalidation_days": c.settings.deadlines.prevalidation.days, "changes": changes_view},
                      detail)
    problems = [SimpleNamespace(field=p.field, code=p.code, label=p.label, message=p.message) for p in form.problems]
    return Answer(Purpose.FORM_INCOMPLETE, u.mail.sender, True,
                  {"problems": problems, "changes": changes_view, "filename": form.file}, detail)


def signed_answer(c: Case) -> Answer | None:
    u = c.understanding
    dossier = u.dossier
    assert dossier is not None and u.mail.sender is not None  # `stranger` let through only a linked sender's mail
    signed_docs = u.reading.of("signed_order_form") + u.reading.of("id_copy")
    if not signed_docs:
        return None
    if dossier.signed_form_received and dossier.id_copy_received:
        return Answer(Purpose.SIGNED_RECEIVED, u.mail.sender, False,
                      {"encoding_days": c.settings.deadlines.encoding.days,
                       "convention_received": dossier.convention_received})
    have = (("signed_order_form", dossier.signed_form_received), ("id_copy", dossier.id_copy_received))
    missing = [w for w, got in have if not got]
    received = [w for w, got in have if got]
    return Answer(Purpose.SIGNED_INCOMPLETE, u.mail.sender, False,
                  {"missing": missing, "received": received, "unusable": _unusable(u, signed_docs, missing)},
                  {"missing": missing})


def _unusable(u: Understanding, docs, missing: list[str]) -> list[SimpleNamespace]:
    """The files that came for a missing document but cannot be used, and why: the client is
    told what was received, never that nothing came."""
    return [SimpleNamespace(filename=u.mail.attachments[d.index].filename or "?", what=d.kind, problem=d.problem,
                            size_kb=max(1, round(u.mail.attachments[d.index].size / 1000)))
            for d in docs if not d.usable and d.kind in missing]
