"""The mails the decided intents (answers/plan.py) become: their template rendered in the
client's language, the thread's subject and references, from the bot's mailbox.

The subject a sender wrote is echoed only back to that sender, once the plan has found them
linked to the dossier (answers/plan.py tells strangers nothing): an answer to anyone else
carries the template's subject. Staff notes show it, so that staff see what came, cut and on
one line (the HTML escapes it); reminders never carry it (answers/scheduled.py)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.addresses import normalise_address
from mailbot.answers.language import LanguageWords, body_language, pick_language
from mailbot.answers.plan import Answer, StaffNote
from mailbot.answers.purposes import Purpose
from mailbot.answers.render import Renderer
from mailbot.config import Settings
from mailbot.mail.subject import SubjectInfo
from mailbot.outbox import Draft
from mailbot.understanding import Understanding


def thread_subject(subject: SubjectInfo, reference: str | None, fallback: str) -> str:
    """RE:, the dossier reference, then the thread's subject without its prefixes; one line."""
    core = " ".join((subject.core or subject.text or fallback).split())
    return f"RE: [{reference}] {core}" if reference else f"RE: {core}"


def dossier_view(dossier) -> SimpleNamespace | None:
    if dossier is None:
        return None
    return SimpleNamespace(reference=dossier.reference, project_name=dossier.project_name,
                           organisation=dossier.organisation)


def client_language(u: Understanding, words: LanguageWords) -> str | None:
    form = u.change.form if u.change else None
    return pick_language(form.language if form else None, u.subject.language, body_language(u.mail.body_text, words),
                         u.dossier.language if u.dossier else None)


def draft_for(intent: Answer | StaffNote, u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings,
              renderer: Renderer, words: LanguageWords) -> Draft:
    if isinstance(intent, StaffNote):
        return note_draft(intent, u, msg_pk, at, settings, renderer)
    return answer_draft(intent, u, msg_pk, at, settings, renderer, words)


def answer_draft(answer: Answer, u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings,
                 renderer: Renderer, words: LanguageWords) -> Draft:
    """The answer in the thread of the client's mail, in the client's language."""
    dossier = u.dossier
    assert dossier is not None  # answers go only to a dossier's contacts (plan.py)
    base: dict[str, Any] = {"dossier": dossier_view(dossier), "now": local_time(at, settings.process.zone)}
    rendered = renderer.render(answer.purpose, client_language(u, words), base | dict(answer.data))
    cc = (settings.mailboxes["bosa"].address,) if answer.cc_bosa else ()
    author = bool(u.mail.sender) and normalise_address(answer.to) == normalise_address(u.mail.sender or "")
    subject = thread_subject(u.subject, dossier.reference, rendered.subject) if author \
        else f"RE: [{dossier.reference}] {rendered.subject}"
    return Draft(answer.purpose, _from(settings), (answer.to, *answer.also_to), cc, rendered, subject,
                 dossier.id, msg_pk, u.mail.message_id,
                 (*u.mail.references, *([u.mail.message_id] if u.mail.message_id else [])),
                 {"dossier": dossier.reference} | dict(answer.detail))


def note_draft(note: StaffNote, u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings,
               renderer: Renderer) -> Draft:
    """A triage note to the staff of the mailbox the mail came into, in their language; or a note
    of another purpose (a held change, in English: its client texts are the FR/NL ones) with its
    own data."""
    box = settings.mailboxes[note.team]
    now = local_time(at, settings.process.zone)
    mail = SimpleNamespace(subject=cut(u.mail.subject, 80), sender=u.mail.sender or "(none)", mailboxes=[note.team],
                           kind=u.kind, received=now)
    language = box.language if note.purpose == Purpose.NEEDS_HUMAN else "en"
    rendered = renderer.render(note.purpose, language, {"dossier": dossier_view(u.dossier), "now": now,
                                                        "mail": mail, "reason": note.reason} | dict(note.data))
    ref = u.dossier.reference if u.dossier else None
    subject = f"[{ref}] [mailbot] {rendered.subject}" if ref else f"[mailbot] {rendered.subject}"
    reason: dict[str, Any] = {"code": getattr(note.reason, "code", None), "en": renderer.reasons.english(note.reason)}
    if getattr(note.reason, "params", None):
        reason["params"] = dict(note.reason.params)  # type: ignore[union-attr]  # a Reason's
    return Draft(note.purpose, _from(settings), (box.address,), (),
                 rendered, cut(subject, 160), u.dossier.id if u.dossier else None, msg_pk, None, (),
                 {"dossier": ref, "reason": reason}, client_mail=False, about=u.mail.sender)


def cut(text: str, length: int) -> str:
    """`text` on one line, at most `length` characters (an ellipsis where it was cut)."""
    line = " ".join(text.split())
    return line if len(line) <= length else line[:length - 1].rstrip() + "…"


def _from(settings: Settings) -> str:
    return settings.mailboxes[settings.answers.from_mailbox].address


def local_time(at: dt.datetime, zone: ZoneInfo) -> str:
    """A moment as staff and clients read it: in the process's time zone, to the minute."""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
