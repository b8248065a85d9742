"""The dossier list: its filters as SQL over the dossier's flags and deadlines (so that a page
of 10,000 dossiers reads only the rows it shows), and the rows the page shows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, not_, or_
from sqlmodel import Session, col, select

from mailbot.addresses import normalise_address
from mailbot.dossiers.state import Wait, stage, waiting_for
from mailbot.store.models import Contact, Deadline, Dossier, Message, PendingChange
from mailbot.web.attention import waiting
from mailbot.web.scope import Scope

PAGE_SIZE = 50
STAGES = ("opened", "form_unusable", "form_incomplete", "form_complete", "prevalidated", "signed_received",
          "access_sent")
AWAITED = ("client", "worldline")


@dataclass(frozen=True)
class ListFilter:
    stage: str | None = None  # one of STAGES
    awaited: str | None = None  # client | worldline
    late: bool = False
    due_today: bool = False
    needs_person: bool = False
    q: str = ""  # reference, project, organisation, address or enterprise number
    page: int = 1


@dataclass(frozen=True)
class DossierRow:
    reference: str
    project_name: str
    organisation: str | None
    stage: str
    waiting: tuple[Wait, ...]
    next_deadline: str | None  # its name
    due: dt.date | None
    late: bool
    due_today: bool
    needs_person: bool


@dataclass(frozen=True)
class DossierList:
    rows: list[DossierRow]
    total: int
    page: int
    pages: int


def _stage_is(name: str) -> ColumnElement[bool]:
    """dossiers/state.py stage(), one value, in SQL."""
    d = Dossier
    signed = and_(col(d.signed_form_received), col(d.id_copy_received))
    if name == "access_sent":
        return col(d.access_sent) == True  # noqa: E712
    before = [not_(col(d.access_sent))]
    if name == "signed_received":
        return and_(*before, signed)
    before.append(not_(signed))
    if name == "prevalidated":
        return and_(*before, col(d.prevalidated))
    form = {"opened": "none", "form_unusable": "attempted", "form_incomplete": "incomplete",
            "form_complete": "complete"}.get(name)
    if form is None:
        return false()
    return and_(*before, not_(col(d.prevalidated)), col(d.form_status) == form)


def _awaits(party: str) -> ColumnElement[bool]:
    """dossiers/state.py waiting_for(), one party, in SQL."""
    d = Dossier
    complete = col(d.form_status) == "complete"
    signed = and_(col(d.signed_form_received), col(d.id_copy_received))
    asked_signed = and_(complete, or_(col(d.prevalidated), col(d.signed_form_received), col(d.id_copy_received)))
    if party == "client":
        waits = or_(not_(complete), not_(col(d.convention_received)), and_(asked_signed, not_(signed)))
    elif party == "worldline":
        waits = or_(and_(complete, not_(col(d.prevalidated))), and_(asked_signed, signed))
    else:
        return false()
    return and_(not_(col(d.access_sent)), waits)


# IN over a small set, not a correlated EXISTS: the open deadlines come from their (state, due)
# index, the waiting mail from its own, instead of a look-up for each of 10,000 dossiers.
def _open_due(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return col(Dossier.id).in_(select(Deadline.dossier_id).where(col(Deadline.state) == "open", condition))


def needs_person_clause(session: Session) -> ColumnElement[bool]:
    """A dossier a person must look at: changes to confirm, reminders stopped (dormant), or a
    mail of its waiting for a person (web/attention.py)."""
    return or_(
        col(Dossier.id).in_(select(PendingChange.dossier_id).where(col(PendingChange.state) == "pending")),
        col(Dossier.dormant_since).is_not(None),
        col(Dossier.id).in_(select(Message.dossier_id).where(col(Message.dossier_id).is_not(None), waiting(session))),
    )


def _flagged(session: Session, dossiers: list[Dossier]) -> set[int]:
    """needs_person_clause for the rows of one page, by their ids (not over every mail)."""
    ids = [d.id for d in dossiers]
    out = {d.id for d in dossiers if d.id is not None and d.dormant_since is not None}
    out |= set(session.exec(select(PendingChange.dossier_id).where(col(PendingChange.dossier_id).in_(ids),
                                                                   col(PendingChange.state) == "pending")))
    out |= {i for i in session.exec(select(Message.dossier_id).where(col(Message.dossier_id).in_(ids),
                                                                     waiting(session))) if i is not None}
    return out


def _search(q: str) -> ColumnElement[bool]:
    q = q.strip()
    like = f"%{q.lower()}%"
    terms: list[ColumnElement[bool]] = [func.lower(Dossier.reference).like(like),
                                        func.lower(Dossier.project_name).like(like),
                                        func.lower(func.coalesce(Dossier.organisation, "")).like(like)]
    if "@" in q:
        terms.append(select(Contact.id).where(Contact.dossier_id == Dossier.id,
                                              col(Contact.email).like(f"%{normalise_address(q)}%")).exists())
    digits = re.sub(r"\D", "", q)
    if len(digits) >= 4:  # an enterprise number typed with or without dots, spaces, BE
        stored = func.replace(func.replace(func.coalesce(Dossier.enterprise_number, ""), ".", ""), " ", "")
        terms.append(stored.like(f"%{digits}%"))
    return or_(*terms)


def dossier_list(session: Session, scope: Scope, flt: ListFilter, today: dt.date) -> DossierList:
    conditions: list[ColumnElement[bool]] = [scope.dossier_seen()]
    if flt.stage:
        conditions.append(_stage_is(flt.stage))
    if flt.awaited:
        conditions.append(_awaits(flt.awaited))
    if flt.late:
        conditions.append(_open_due(col(Deadline.due) < today))
    if flt.due_today:
        conditions.append(_open_due(col(Deadline.due) == today))
    if flt.needs_person:
        conditions.append(needs_person_clause(session))
    if flt.q.strip():
        conditions.append(_search(flt.q))
    where = and_(*conditions)
    # The most urgent first: the earliest open deadline, then the newest dossiers. The open
    # deadlines are few (their index); a join on them, not a sub-query for each dossier.
    next_due = (select(col(Deadline.dossier_id).label("dossier_id"), func.min(Deadline.due).label("due"))
                .where(col(Deadline.state) == "open").group_by(col(Deadline.dossier_id)).subquery())
    # Every match's id in order, in one statement: the filters (the scope, the mail waiting for
    # a person) run once for the count and the page, not twice; then the page's rows by id.
    matching = list(session.exec(select(Dossier.id).outerjoin(next_due, next_due.c.dossier_id == Dossier.id)
                                 .where(where)
                                 .order_by(next_due.c.due.is_(None), next_due.c.due, col(Dossier.reference).desc())))
    total = len(matching)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, flt.page), pages)
    ids = matching[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    by_id = {d.id: d for d in session.exec(select(Dossier).where(col(Dossier.id).in_(ids)))}
    dossiers = [by_id[i] for i in ids]
    deadlines: dict[int, Deadline] = {}
    for dl in session.exec(select(Deadline).where(col(Deadline.dossier_id).in_(ids), col(Deadline.state) == "open")):
        if dl.dossier_id not in deadlines or dl.due < deadlines[dl.dossier_id].due:
            deadlines[dl.dossier_id] = dl
    flagged = _flagged(session, dossiers)
    rows = []
    for d in dossiers:
        assert d.id is not None  # read back
        nearest = deadlines.get(d.id)
        rows.append(DossierRow(d.reference, d.project_name, d.organisation, stage(d), waiting_for(d),
                               nearest.name if nearest else None, nearest.due if nearest else None,
                               bool(nearest and nearest.due < today), bool(nearest and nearest.due == today),
                               d.id in flagged))
    return DossierList(rows, total, page, pages)
