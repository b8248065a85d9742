"""Which answers one understood mail calls for, to whom, and in which language.

Rules (yes/no checks, no side effects) decide whether the bot may answer at all; this module
then chooses the purposes. Privacy: dossier details go only to addresses linked to the dossier
(the original sender and the contacts its order form names); anyone else gets nothing, and
staff get a `needs_human` note instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from mailbot.answers.language import body_language, pick_language
from mailbot.answers.outbox import Draft
from mailbot.answers.policy import echo_reason, no_answer_reason
from mailbot.answers.render import Renderer
from mailbot.config import Settings
from mailbot.dossiers.process import is_linked
from mailbot.forms import FormRules
from mailbot.forms.changes import compare
from mailbot.mail.documents import DocumentRules
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo
from mailbot.store.models import OutboxMail

if TYPE_CHECKING:
    from mailbot.pipeline import Understanding

BRUSSELS = ZoneInfo("Europe/Brussels")


@dataclass(frozen=True)
class Silence:
    """A decision not to answer, with its reason."""
    reason: str


def thread_subject(subject: SubjectInfo, reference: str | None, fallback: str) -> str:
    """RE:, the dossier reference, then the thread's subject without its prefixes; one line."""
    core = " ".join((subject.core or subject.text or fallback).split())
    return f"RE: [{reference}] {core}" if reference else f"RE: {core}"


def dossier_view(dossier) -> SimpleNamespace | None:
    if dossier is None:
        return None
    return SimpleNamespace(reference=dossier.reference, project_name=dossier.project_name,
                           organisation=dossier.organisation)


def client_language(u: Understanding) -> str | None:
    form = u.change.form if u.change else None
    return pick_language(form.language if form else None, u.subject.language, body_language(u.mail.body_text),
                         u.dossier.language if u.dossier else None)


def plan_for_mail(session: Session, u: Understanding, raw: bytes, msg_pk: int, at: dt.datetime,
                  settings: Settings, renderer: Renderer, form_rules: FormRules,
                  document_rules: DocumentRules) -> list[Draft | Silence]:
    """The drafts (or the silences) for one processed mail."""
    mail, dossier = u.mail, u.dossier
    if u.kind in ("bounce", "auto_reply"):
        return [Silence(f"{u.kind}: {u.kind_reason}")]
    if u.kind == "staff":
        return [Silence("a staff mail: staff answer clients themselves")]
    if u.kind == "unrelated":
        if u.kind_reason != "in no dossier":  # list or bulk mail: the digest lists it, no note
            return [Silence(f"unrelated: {u.kind_reason}")]
        return [Silence("unrelated: in no dossier"),
                _needs_human(u, msg_pk, at, settings, renderer, "a mail outside any dossier")]
    if reason := no_answer_reason(mail, raw, settings):
        return [Silence(reason)]
    # linked before this mail: a stranger's order form that names the stranger as a contact
    # links them while the mail is applied, and must not earn them an answer at once
    if dossier is None or u.unlinked_sender or not is_linked(session, dossier, mail.sender):
        who = "a sender not linked to the dossier" if dossier is not None else "a sender with no dossier"
        return [Silence(f"privacy: {who} gets no dossier details"),
                _needs_human(u, msg_pk, at, settings, renderer, f"{who} wrote; the bot tells strangers nothing")]
    if u.kind == "reply":
        return [Silence("a client's question in a dossier: a person answers")]
    if reason := _echo(session, mail, at, document_rules):
        return [Silence(reason)]
    return _submission(u, msg_pk, at, settings, renderer, form_rules)


MAX_THREAD_IDS = 50  # of References, the newest: a hostile mail may name thousands


def replied_answer(session: Session, mail: ParsedMail) -> OutboxMail | None:
    """The bot's own mail (an outbox row) that this mail replies to: the one In-Reply-To names,
    else the newest one References names."""
    direct = mail.in_reply_to[:5]
    ids = list(dict.fromkeys((*direct, *mail.references[-MAX_THREAD_IDS:])))
    if not ids:
        return None
    rows = session.exec(select(OutboxMail).where(col(OutboxMail.message_id).in_(ids))).all()
    if not rows:
        return None
    return max([r for r in rows if r.message_id in direct] or rows, key=lambda r: r.id)


def _echo(session: Session, mail: ParsedMail, at: dt.datetime, document_rules: DocumentRules) -> str | None:
    """Why a reply to one of the bot's own answers is not answered again (policy.echo_reason)."""
    answer = replied_answer(session, mail)
    if answer is None:
        return None
    seconds = (at - (answer.sent_at or answer.created_at)).total_seconds()
    return echo_reason(mail, answer.purpose, seconds, document_rules)


def _submission(u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings,
                renderer: Renderer, form_rules: FormRules) -> list[Draft | Silence]:
    dossier, change = u.dossier, u.change
    language = client_language(u)
    base: dict[str, Any] = {"dossier": dossier_view(dossier), "now": _now(at)}
    out: list[Draft | Silence] = []

    def draft(purpose: str, context: dict[str, Any], detail: dict[str, Any], cc_bosa: bool) -> Draft:
        rendered = renderer.render(purpose, language, base | context)
        wl = settings.mailboxes[settings.answers.from_mailbox].address
        cc = (settings.mailboxes["bosa"].address,) if cc_bosa else ()
        return Draft(purpose, wl, (u.mail.sender,), cc, rendered,
                     thread_subject(u.subject, dossier.reference, rendered.subject),
                     dossier.id, msg_pk, u.mail.message_id,
                     (*u.mail.references, *([u.mail.message_id] if u.mail.message_id else [])),
                     {"dossier": dossier.reference} | detail)

    form = change.form if change else None
    if form is not None:
        changes = compare(change.previous_form, form) if change.previous_form else None
        lang = form.language or "fr"
        changes_view = SimpleNamespace(**{k: [form_rules.label(f, lang) for f in getattr(changes, k)]
                                          for k in ("fixed", "still_wrong", "newly_wrong", "changed")}) \
            if changes else None
        detail = {"problems": [[p.field, p.code] for p in form.problems]}
        if changes:
            detail["changes"] = changes.summary()
        if form.complete:
            out.append(draft("form_complete", {"filename": form.file, "convention_received": dossier.convention_received,
                                               "prevalidation_days": settings.deadlines.prevalidation.days,
                                               "changes": changes_view}, detail, True))
        else:
            problems = [SimpleNamespace(field=p.field, code=p.code, label=p.label, message=p.message)
                        for p in form.problems]
            out.append(draft("form_incomplete", {"problems": problems, "changes": changes_view, "filename": form.file},
                             detail, True))
    else:
        attempts = u.reading.of("order_form")
        if attempts:
            check = next((d.check for d in attempts if d.check is not None), None)
            reason = "unreadable" if check is not None else "not_a_workbook"
            text = check.problems[0].message if check and check.problems else attempts[0].reason
            out.append(draft("form_missing", {"reason": reason, "detail": text},
                             {"problems": [["form", check.problems[0].code]] if check and check.problems else []}, True))
        elif not u.reading.documents and dossier.form_status in ("none", "attempted"):
            out.append(draft("form_missing", {"reason": "no_attachment", "detail": ""}, {}, True))
    signed_docs = u.reading.of("signed_order_form") + u.reading.of("id_copy")
    if signed_docs:
        if dossier.signed_form_received and dossier.id_copy_received:
            out.append(draft("signed_received", {"encoding_days": settings.deadlines.encoding.days,
                                                 "convention_received": dossier.convention_received}, {}, False))
        else:
            missing = [w for w, have in (("signed_order_form", dossier.signed_form_received),
                                         ("id_copy", dossier.id_copy_received)) if not have]
            received = [w for w, have in (("signed_order_form", dossier.signed_form_received),
                                          ("id_copy", dossier.id_copy_received)) if have]
            out.append(draft("signed_incomplete", {"missing": missing, "received": received,
                                                   "unusable": _unusable(u, signed_docs, missing)},
                             {"missing": missing}, False))
    if not out:
        out.append(Silence("nothing to answer: " + (", ".join(u.reading.kinds) or "no document")))
    return out


def _unusable(u: Understanding, docs, missing: list[str]) -> list[SimpleNamespace]:
    """The files that came for a missing document but cannot be used, and why: the client is
    told what was received, never that nothing came."""
    return [SimpleNamespace(filename=u.mail.attachments[d.index].filename or "?", what=d.kind, problem=d.problem,
                            size_kb=max(1, round(u.mail.attachments[d.index].size / 1000)))
            for d in docs if not d.usable and d.kind in missing]


def _now(at: dt.datetime) -> str:
    return at.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M")


def _needs_human(u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings, renderer: Renderer,
                 reason: str) -> Draft:
    """A triage note to the staff of the mailbox the mail came into."""
    team = next((m for m in u.mailboxes if m in settings.mailboxes), "worldline")
    box = settings.mailboxes[team]
    mail = SimpleNamespace(subject=u.mail.subject, sender=u.mail.sender or "(none)", mailboxes=[team],
                           kind=u.kind, received=_now(at))
    rendered = renderer.render("needs_human", "en", {"dossier": dossier_view(u.dossier), "now": _now(at),
                                                      "mail": mail, "reason": reason})
    ref = u.dossier.reference if u.dossier else None
    subject = f"[mailbot] needs a person: {u.mail.subject[:120]}" if not ref else f"[{ref}] [mailbot] needs a person: {u.mail.subject[:100]}"
    return Draft("needs_human", settings.mailboxes[settings.answers.from_mailbox].address, (box.address,), (),
                 rendered, subject, u.dossier.id if u.dossier else None, msg_pk, None, (),
                 {"dossier": ref, "reason": reason}, client_mail=False)
