"""The daily triage summary for each team, from the database."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, select

from mailbot.answers.drafts import local_time
from mailbot.answers.reasons import Reason
from mailbot.answers.render import Renderer
from mailbot.calendar import BusinessCalendar
from mailbot.config import Settings
from mailbot.dossiers.state import stage, waiting_for
from mailbot.history import to_review
from mailbot.mail.kinds import KindCode
from mailbot.outbox import Draft, shadow_since
from mailbot.store.models import Deadline, Decision, Dossier, Message, PendingChange, Sighting


def digest_context(session: Session, team: str, now: dt.datetime, calendar: BusinessCalendar,
                   zone: ZoneInfo, site: str | None = None) -> dict[str, Any]:
    """Everything the digest shows, as plain values for the template; days and times in `zone`;
    each dossier linked to its page on the staff site at `site` ([web] public_url), if any."""
    today = now.astimezone(zone).date()
    since = dt.datetime.combine(calendar.previous_business_day(today), now.astimezone(zone).timetz())
    open_deadlines = session.exec(select(Deadline).where(Deadline.state == "open")).all()
    due_by_dossier: dict[int, Deadline] = {}
    for dl in open_deadlines:
        if dl.dossier_id not in due_by_dossier or dl.due < due_by_dossier[dl.dossier_id].due:
            due_by_dossier[dl.dossier_id] = dl
    dossiers = session.exec(select(Dossier).where(Dossier.access_sent == False)  # noqa: E712
                            .order_by(Dossier.reference)).all()
    by_id = {d.id: d for d in dossiers}
    rows = []
    for d in dossiers:
        assert d.id is not None  # read back
        deadline = due_by_dossier.get(d.id)
        rows.append(SimpleNamespace(reference=d.reference, project_name=d.project_name, stage=stage(d),
                                    waiting=[(w.party, w.what) for w in waiting_for(d)],
                                    due=deadline.due.isoformat() if deadline else None,
                                    overdue=bool(deadline and deadline.due < today)))

    def deadline_row(dl: Deadline, **extra: Any) -> SimpleNamespace | None:
        d = by_id.get(dl.dossier_id)
        if d is None:
            return None
        return SimpleNamespace(reference=d.reference, project_name=d.project_name, deadline=dl.name,
                               due=dl.due.isoformat(), **extra)

    due_today = [r for dl in open_deadlines if dl.due == today and (r := deadline_row(dl))]
    overdue = [r for dl in sorted(open_deadlines, key=lambda x: x.due) if dl.due < today and
               (r := deadline_row(dl, days_late=calendar.business_days_between(dl.due, today)))]
    # EXISTS and no ORDER BY, so that SQLite walks the recent mail by its received_at index
    # (with IN, or sorted by id, it walked every sighting of the mailbox); sorted here instead.
    seen_here = select(Sighting.id).where(Sighting.message_pk == Message.id, Sighting.mailbox == team).exists()
    flagged = sorted(session.exec(select(Message).where(Message.received_at >= since, seen_here)).all(),
                     key=lambda m: m.id or 0)  # read back: never None
    held = _kept_out_of_dossiers(session, [m.id for m in flagged
                                           if m.id is not None and m.dossier_id is None and m.kind == "submission"])
    needs_person = []
    for m in flagged:
        reason = needs_person_reason(m) or (held.get(m.id) if m.id is not None else None)
        if reason:
            dossier = by_id.get(m.dossier_id) or (session.get(Dossier, m.dossier_id) if m.dossier_id else None)
            ref = dossier.reference if dossier else None
            needs_person.append(SimpleNamespace(subject=m.subject, sender=m.sender or "",
                                                received=local_time(m.received_at, zone), reason=reason, dossier=ref))
    changes_to_confirm = []
    for change in session.exec(select(PendingChange).where(PendingChange.state == "pending")
                               .order_by(col(PendingChange.id))).all():
        dossier = by_id.get(change.dossier_id) or session.get(Dossier, change.dossier_id)
        assert dossier is not None  # a pending change's dossier (foreign key)
        cause = session.get(Message, change.message_pk)
        changes_to_confirm.append(SimpleNamespace(
            reference=dossier.reference, project_name=dossier.project_name, fields=change.fields.split(","),
            sender=(cause.sender if cause is not None else None) or "?", since=local_time(change.created_at, zone)))
    shadow = [SimpleNamespace(purpose=o.purpose, to=", ".join(json.loads(o.recipients)), subject=o.subject,
                              dossier=json.loads(o.detail).get("dossier"))
              for o in shadow_since(session, since)]
    return {
        "team": team, "date": today.isoformat(), "now": local_time(now, zone), "dossier": None, "site": site,
        "new_dossiers": [SimpleNamespace(reference=d.reference, project_name=d.project_name,
                                         organisation=d.organisation, opened=local_time(d.opened_at, zone))
                         for d in dossiers if d.opened_at >= since],
        "dossiers": rows, "due_today": due_today, "overdue": overdue,
        "missing_bosa_copy": [SimpleNamespace(reference=d.reference, project_name=d.project_name)
                              for d in dossiers if d.bosa_copy_missing],
        "needs_person": needs_person, "shadow": shadow, "changes_to_confirm": changes_to_confirm,
        "claimed_twice": claimed_twice(session),
        "dormant": [SimpleNamespace(reference=d.reference, project_name=d.project_name,
                                    since=local_time(d.dormant_since, zone),
                                    waiting=[(w.party, w.what) for w in waiting_for(d)])
                    for d in dossiers if d.dormant_since is not None],
        # Opened from mail of before the bot's first start and still open: listed once (jobs.run_digest).
        "imported": [SimpleNamespace(reference=d.reference, project_name=d.project_name, stage=stage(d),
                                     waiting=[(w.party, w.what) for w in waiting_for(d)],
                                     opened=local_time(d.opened_at, zone))
                     for d in to_review(session, team)],
    }


def _kept_out_of_dossiers(session: Session, message_pks: list[int]) -> dict[int, str]:
    """Why these submissions opened no dossier (past the per-sender limit), by mail."""
    if not message_pks:
        return {}
    rows = session.exec(select(Decision.message_pk, Decision.reason)
                        .where(col(Decision.message_pk).in_(message_pks), Decision.purpose == "dossier")).all()
    return {pk: reason for pk, reason in rows if pk is not None}


def claimed_twice(session: Session) -> list[SimpleNamespace]:
    """Projects two dossiers or more claim (one still open): no sender may take another's dossier
    by naming its project (dossiers/matching.py), so a person settles which is the client's."""
    keys = session.exec(select(Dossier.project_key).group_by(Dossier.project_key).having(func.count() > 1)).all()
    out = []
    for key in sorted(keys):
        rows = session.exec(select(Dossier).where(Dossier.project_key == key).order_by(Dossier.reference)).all()
        if not all(d.access_sent for d in rows):
            out.append(SimpleNamespace(project_name=rows[0].project_name, references=[d.reference for d in rows]))
    return out


def needs_person_reason(m: Message) -> Reason | None:
    """Why the mail waits for a person, as a code the template renders in the team's language."""
    if m.status == "quarantined":
        return Reason("set_aside", {"detail": m.status_reason})
    if m.sender_auth and not m.sender_authenticated and m.kind not in ("bounce", "auto_reply"):
        return Reason("not_authenticated", {"detail": m.sender_auth_reason})
    if m.unlinked_sender:
        return Reason("unlinked_sender")
    if m.kind == "unrelated":
        if m.kind_code == KindCode.NO_DOSSIER:
            return Reason("no_dossier")
        if m.kind_code == KindCode.BULK:
            return Reason("bulk", {"detail": m.kind_reason})
        return Reason("unrelated", {"detail": m.kind_reason})  # recorded before kind codes were
    if m.kind == "reply":
        return Reason("client_question")
    if m.defects and m.kind != "submission":
        return Reason("malformed", {"detail": m.defects[:120]})
    return None


def digest_draft(session: Session, team: str, now: dt.datetime, settings: Settings,
                 calendar: BusinessCalendar, renderer: Renderer) -> Draft:
    box = settings.mailboxes[team]
    context = digest_context(session, team, now, calendar, settings.process.zone, settings.web.public_url)
    rendered = renderer.render("digest", box.language, context)
    counts = {k: len(context[k]) for k in ("new_dossiers", "dossiers", "due_today", "overdue", "missing_bosa_copy",
                                           "needs_person", "shadow", "changes_to_confirm", "dormant", "imported",
                                           "claimed_twice")}
    return Draft("digest", settings.mailboxes[settings.answers.from_mailbox].address, (box.address,), (),
                 rendered, rendered.subject, None, None, None, (), {"team": team, "counts": counts},
                 client_mail=False)
