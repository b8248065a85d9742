"""Which dossier a mail belongs to, in the order the process trusts the signals.

1. the dossier reference the bot puts in its own subjects ([EPAY-2026-0042]);
2. In-Reply-To / References to a mail already in a dossier;
3. the project name of the subject (normalised);
4. the order form's own project name, then its enterprise number (with a close project name);
5. the sender, when linked to exactly one dossier (or to several, one of which the subject names)
   -- unless the mail carries an order form for a project no dossier has: that is a new project.

No squatting (3 and 4): a project's name is no secret, so a dossier found by name alone takes
the mail only from an address that belongs to it -- one that wrote to it (a "sender" or
"colleague" contact, not an address merely named in its order form), a colleague of those at
the organisation's own domain, or authenticated staff. Anyone else's mail opens its own dossier,
and the digest shows the two dossiers claiming one project for a person to settle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher

from sqlmodel import Session, col, select

from mailbot.addresses import normalise_address
from mailbot.dossiers.process import is_colleague, writers
from mailbot.forms import FormCheck
from mailbot.mail.model import ParsedMail
from mailbot.mail.subject import SubjectInfo, project_key
from mailbot.store.models import Contact, Dossier, Message


@dataclass(frozen=True)
class Match:
    dossier: Dossier | None
    how: str  # reference | thread | project | form_project | enterprise_number | sender | claimed | none


def thread_ids(mail: ParsedMail) -> list[str]:
    return list(dict.fromkeys((*mail.in_reply_to, *reversed(mail.references))))[:50]


def find_dossier(session: Session, mail: ParsedMail, subject: SubjectInfo, forms: list[FormCheck],
                 extra_thread_lookup=None, *, staff: bool = False,
                 is_free_mail: Callable[[str], bool]) -> Match:
    """`staff`: the sender is authenticated staff, who may write about any project by name.
    `is_free_mail`: the rules' free-mail test (DocumentRules.is_free_mail), for colleagues."""
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

    def belongs(dossier: Dossier) -> bool:
        sender = mail.sender
        if staff:
            return True
        return bool(sender) and sender is not None and (normalise_address(sender) in writers(session, dossier)
                                                        or is_colleague(session, dossier, sender, is_free_mail))

    claimed = False  # a project named here is another's: this mail opens its own dossier
    if subject.project and (key := project_key(subject.project)):
        found, taken = _by_project(session, key, belongs)
        if found:
            return Match(found, "project")
        claimed |= taken
    form_names = [check.values["project_name"] for check in forms if check.values.get("project_name")]
    for name in form_names:
        found, taken = _by_project(session, project_key(name), belongs)
        if found:
            return Match(found, "form_project")
        claimed |= taken
    for check in forms:
        number = check.values.get("enterprise_number")
        if number:
            # One organisation may run several projects: the number alone decides only when
            # the form's project name is close to the dossier's (a retyped name).
            for candidate in session.exec(select(Dossier).where(Dossier.enterprise_number == number)).all():
                if _close(candidate.project_key, project_key(check.values.get("project_name", ""))):
                    if belongs(candidate):
                        return Match(candidate, "enterprise_number")
                    claimed = True
    if form_names:
        return Match(None, "none")  # an order form for a project no dossier has: a new project
    if claimed:
        return Match(None, "claimed")  # the project is another sender's dossier: not filed there
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


def _by_project(session: Session, key: str, belongs: Callable[[Dossier], bool]) -> tuple[Dossier | None, bool]:
    """The newest dossier of project `key` the sender belongs to; and whether any dossier has it."""
    if not key:
        return None, False
    found = session.exec(select(Dossier).where(Dossier.project_key == key)
                         .order_by(col(Dossier.updated_at).desc(), col(Dossier.id).desc()).limit(20)).all()
    return next((d for d in found if belongs(d)), None), bool(found)
