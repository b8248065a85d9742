"""The mails the decided intents (answers/plan.py) become: their template rendered in the
client's language, the thread's subject and references, from the bot's mailbox."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from mailbot.answers.language import LanguageWords, body_language, pick_language
from mailbot.outbox import Draft
from mailbot.answers.plan import Answer, StaffNote
from mailbot.answers.purposes import Purpose
from mailbot.answers.render import Renderer
from mailbot.config import Settings
from mailbot.mail.subject import SubjectInfo
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
    base: dict[str, Any] = {"dossier": dossier_view(dossier), "now": local_time(at, settings.process.zone)}
    rendered = renderer.render(answer.purpose, client_language(u, words), base | dict(answer.data))
    cc = (settings.mailboxes["bosa"].address,) if answer.cc_bosa else ()
    return Draft(answer.purpose, _from(settings), (answer.to,), cc, rendered,
                 thread_subject(u.subject, dossier.reference, rendered.subject),
                 dossier.id, msg_pk, u.mail.message_id,
                 (*u.mail.references, *([u.mail.message_id] if u.mail.message_id else [])),
                 {"dossier": dossier.reference} | dict(answer.detail))


def note_draft(note: StaffNote, u: Understanding, msg_pk: int, at: dt.datetime, settings: Settings,
               renderer: Renderer) -> Draft:
    """A triage note to the staff of the mailbox the mail came into, in their language."""
    box = settings.mailboxes[note.team]
    now = local_time(at, settings.process.zone)
    mail = SimpleNamespace(subject=u.mail.subject, sender=u.mail.sender or "(none)", mailboxes=[note.team],
                           kind=u.kind, received=now)
    rendered = renderer.render(Purpose.NEEDS_HUMAN, box.language, {"dossier": dossier_view(u.dossier), "now": now,
                                                                    "mail": mail, "reason": note.reason})
    ref = u.dossier.reference if u.dossier else None
    subject = f"[{ref}] [mailbot] {rendered.subject}" if ref else f"[mailbot] {rendered.subject}"
    reason = {"code": note.reason.code, "en": renderer.reasons.english(note.reason)} \
        | ({"params": dict(note.reason.params)} if note.reason.params else {})
    return Draft(Purpose.NEEDS_HUMAN, _from(settings), (box.address,), (),
                 rendered, subject[:160], u.dossier.id if u.dossier else None, msg_pk, None, (),
                 {"dossier": ref, "reason": reason}, client_mail=False)


def _from(settings: Settings) -> str:
    return settings.mailboxes[settings.answers.from_mailbox].address


def local_time(at: dt.datetime, zone: ZoneInfo) -> str:
    """A moment as staff and clients read it: in the process's time zone, to the minute."""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
