"""Which dossier a mail belongs to, in the order the process trusts the signals.

1. the dossier reference the bot puts in its own subjects ([EPAY-2026-0042]);
2. In-Reply-To / References to a mail already in a dossier;
3. the project name of the subject (normalised);
4. the order form's own project name, then its enterprise number (with a close project name);
5. the sender, when linked to exactly one dossier (or to several, one of which the subject names)
   -- unless the mail carries an order form for a project no dossier has: that is a new project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from sqlmodel import Session, col, select

from mailbot.forms import FormCheck
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo, project_key
from mailbot.store.models import Contact, Dossier, Message


@dataclass(frozen=True)
class Match:
    dossier: Dossier | None
    how: str  # reference | thread | project | form_project | enterprise_number | sender | none


def thread_ids(mail: ParsedMail) -> list[str]:
    return list(dict.fromkeys((*mail.in_reply_to, *reversed(mail.references))))[:50]


def find_dossier(session: Session, mail: ParsedMail, subject: SubjectInfo, forms: list[FormCheck],
                 extra_thread_lookup=None) -> Match:
    if subject.reference:
        found = session.exec(select(Dossier).where(Dossier.reference == subject.reference)).first()
        if found:
            return Match(found, "reference")
    ids = thread_ids(mail)
    if ids:
        row = session.exec(select(Message.dossier_id).where(col(Message.message_id).in_(ids),
                                                            col(Message.dossier_id).is_not(None))
                           .order_by(col(Message.id).desc()).limit(1)).first()
        if row is None and extra_thread_lookup is not None:
            row = extra_thread_lookup(session, ids)
        if row is not None:
            return Match(session.get(Dossier, row), "thread")
    if subject.project and (key := project_key(subject.project)):
        found = _by_project(session, key)
        if found:
            return Match(found, "project")
    form_names = [check.values["project_name"] for check in forms if check.values.get("project_name")]
    for name in form_names:
        if found := _by_project(session, project_key(name)):
            return Match(found, "form_project")
    for check in forms:
        number = check.values.get("enterprise_number")
        if number:
            # One organisation may run several projects: the number alone decides only when
            # the form's project name is close to the dossier's (a retyped name).
            for candidate in session.exec(select(Dossier).where(Dossier.enterprise_number == number)).all():
                if _close(candidate.project_key, project_key(check.values.get("project_name", ""))):
                    return Match(candidate, "enterprise_number")
    if form_names:
        return Match(None, "none")  # an order form for a project no dossier has: a new project
    if mail.sender:
        ids_of_sender = set(session.exec(select(Contact.dossier_id).where(Contact.email == mail.sender)).all())
        if len(ids_of_sender) == 1:
            return Match(session.get(Dossier, ids_of_sender.pop()), "sender")
        # One organisation, several projects: the one whose name the subject mentions.
        said = project_key(subject.core)
        named = [d for d in session.exec(select(Dossier).where(col(Dossier.id).in_(ids_of_sender)))
                 if d.project_key and d.project_key in said]
        if len(named) == 1:
            return Match(named[0], "sender_subject")
    return Match(None, "none")


def _close(a: str, b: str) -> bool:
    """The same project name, retyped: one contains the other, or a small typo. Numbers must
    agree ("Projet 1" and "Projet 2" are two projects)."""
    if not a or not b or re.findall(r"\d+", a) != re.findall(r"\d+", b):
        return False
    return a in b or b in a or SequenceMatcher(None, a, b).ratio() >= 0.85


def _by_project(session: Session, key: str) -> Dossier | None:
    return session.exec(select(Dossier).where(Dossier.project_key == key)
                        .order_by(col(Dossier.updated_at).desc()).limit(1)).first()
