"""Replay a folder of .eml files through the pipeline with a simulated clock.

Each mail is processed at its Date, in every watched mailbox whose address is in its To, Cc
or Delivered-To (or, when it is from a watched mailbox's address and its file lies in a folder
named like that mailbox's Sent folder, in that Sent folder). Whether a mail is from its sender
is read as live: the mailbox's configured receiving server's Authentication-Results (a real
export carries its server's; the season's test mails carry the sandbox's stamp, Mail.delivered).
Between mails, and up to --until, the scheduled jobs (deadline sweeps, reminders,
digests) run at their simulated times. Nothing is sent: the outbox is printed as `sent` events.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.utils
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from mailbot.config import Settings
from mailbot.context import Context
from mailbot.jobs import JOBS
from mailbot.outbox import OutboxState, written_after
from mailbot.pipeline import handle
from mailbot.seen import Seen
from mailbot.store.models import OutboxMail
from mailbot.trust import sent_folder
from mailbot.understanding import Outcome

Emit = Callable[[dict], None]


@dataclass(frozen=True)
class Queued:
    at: dt.datetime
    path: Path


def collect(paths: list[Path]) -> list[Queued]:
    """Every .eml under the paths, ordered by Date header (then by name)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.eml")) if path.is_dir() else [path])
    parser = email.parser.BytesHeaderParser()
    queued = []
    fallback = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    for path in files:
        with path.open("rb") as handle_:
            headers = parser.parse(handle_)
        try:
            at = email.utils.parsedate_to_datetime(str(headers.get("Date", "")))
            at = at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
        except (TypeError, ValueError, IndexError):
            at = fallback  # no usable Date: first, so that it cannot jump ahead of the clock
        queued.append(Queued(at.astimezone(dt.timezone.utc), path))
    return sorted(queued, key=lambda q: (q.at, q.path.name))


def places(raw: bytes, settings: Settings, path: Path | None = None) -> list[Seen]:
    """Where a mail would have been seen, from its addresses. A mail from a watched mailbox's
    address or staff counts as found in that mailbox's Sent folder only when its file lies in a
    folder of that name (an exported Sent folder): the From header alone is anyone's to write,
    and the Sent folder vouches for its sender (mailbot/trust.py)."""
    headers = email.parser.BytesHeaderParser().parsebytes(raw)
    def addresses(*names: str) -> set[str]:
        values = [str(v) for n in names for v in (headers.get_all(n) or [])]
        return {a.lower() for _, a in email.utils.getaddresses(values) if a}
    to = addresses("To", "Cc", "Delivered-To", "X-Original-To")
    sender = addresses("From")
    folders = {part.casefold() for part in path.parent.parts} if path is not None else set()
    sent = [Seen(name, sent_folder(settings, name)) for name, box in settings.mailboxes.items()
            if sender & {box.address, *box.staff} and sent_folder(settings, name).casefold() in folders]
    if sent:
        return sent
    seen = [Seen(name, "INBOX") for name, box in settings.mailboxes.items() if box.address in to]
    return seen or [Seen("worldline", "INBOX")]


def job_times(start: dt.datetime, end: dt.datetime, ctx: Context) -> Iterator[tuple[dt.datetime, str]]:
    """The scheduled jobs in (start, end], on business days at the configured times of process.timezone."""
    schedule, zone = ctx.settings.schedule, ctx.settings.process.zone
    calendar = ctx.calendars[schedule.calendar]
    day = start.astimezone(zone).date()
    while day <= end.astimezone(zone).date():
        if calendar.is_business_day(day):
            jobs = [(schedule.digest_time, "digest")] + [(t, "sweep") for t in schedule.sweep_times]
            for at_time, job in sorted(jobs):
                at = dt.datetime.combine(day, at_time, zone).astimezone(dt.timezone.utc)
                if start < at <= end:
                    yield at, job
        day += dt.timedelta(days=1)


class Outbox:
    """Emits, as `sent` events, the outbox mails written since the last look."""

    def __init__(self, ctx: Context, emit: Emit) -> None:
        self.ctx, self.emit, self.last_id = ctx, emit, 0

    def flush(self) -> None:
        with Session(self.ctx.engine) as session:
            rows = written_after(session, self.last_id)
        for row in rows:
            self.emit(sent_event(row))
            assert row.id is not None  # read back
            self.last_id = row.id


def sent_event(mail: OutboxMail) -> dict[str, Any]:
    """The `sent` line for an outbox mail."""
    detail = json.loads(mail.detail or "{}")
    event = {"event": "sent", "at": mail.created_at.isoformat(), "purpose": mail.purpose,
             "dossier": detail.pop("dossier", None), "to": json.loads(mail.recipients), "cc": json.loads(mail.cc),
             "subject": mail.subject, "language": mail.language.split("+")[0],
             "problems": detail.pop("problems", []), "message_id": mail.message_id}
    if mail.language == "fr+nl":
        event["bilingual"] = True
    if mail.state == OutboxState.SHADOW:
        event["shadow"] = True
    event.update(detail)
    return event


def run_jobs(start: dt.datetime, end: dt.datetime, ctx: Context, outbox: Outbox) -> None:
    for at, job in job_times(start, end, ctx):
        JOBS[job](ctx, at)
        outbox.flush()


def received_event(outcome: Outcome, at: dt.datetime) -> dict:
    u = outcome.understanding
    event: dict[str, Any] = {"event": "received", "at": at.isoformat(), "message_id": outcome.message_id or outcome.key,
             "mailboxes": list(outcome.mailboxes), "kind": outcome.kind,
             "documents": list(u.reading.kinds) if u else [], "dossier": outcome.dossier}
    if u:
        event["matched_by"] = u.matched_by
        event["subject"] = u.mail.subject
        if u.change and u.change.form:
            event["problems"] = [[p.field, p.code] for p in u.change.form.problems]
        if u.change and u.change.events:
            event["changes"] = list(u.change.events)
        if u.unlinked_sender:
            event["unlinked_sender"] = True
        if not u.sender_auth.authenticated:
            event["not_authenticated"] = u.sender_auth.reason
    if outcome.quarantined:
        event["quarantined"] = outcome.quarantined
    return event


def replay(paths: list[Path], ctx: Context, emit: Emit, until: dt.datetime | None = None) -> int:
    """Process every mail at its time; returns how many mails were read."""
    queue = collect(paths)
    outbox = Outbox(ctx, emit)
    clock = queue[0].at if queue else (until or dt.datetime.now(dt.timezone.utc))
    for item in queue:
        if item.at > clock:
            run_jobs(clock, item.at, ctx, outbox)
            clock = item.at
        raw = item.path.read_bytes()
        outcomes = [handle(raw, seen, item.at, ctx) for seen in places(raw, ctx.settings, item.path)]
        main = next((o for o in outcomes if not o.duplicate), outcomes[0])
        event = received_event(main, item.at) | {"mailboxes": list(outcomes[-1].mailboxes)}
        if main.duplicate:
            event["duplicate"] = True
        emit(event)
        outbox.flush()
    if until is not None and until > clock:
        run_jobs(clock, until, ctx, outbox)
        clock = until
    for event in dossier_summaries(ctx, clock):
        emit(event)
    return len(queue)


def dossier_summaries(ctx: Context, now: dt.datetime) -> list[dict]:
    """Per dossier, at the end: what came, what it waits for, what is late."""
    from mailbot.dossiers.state import stage, waiting_for
    from mailbot.store.models import Deadline, Dossier, Message

    today = now.astimezone(ctx.settings.process.zone).date()
    with Session(ctx.engine) as session:
        out = []
        for d in session.exec(select(Dossier).order_by(Dossier.reference)):
            messages = session.exec(select(Message).where(Message.dossier_id == d.id).order_by(col(Message.id))).all()
            deadlines = session.exec(select(Deadline).where(Deadline.dossier_id == d.id)
                                     .order_by(col(Deadline.id))).all()
            out.append({"event": "dossier", "at": now.isoformat(), "dossier": d.reference, "project": d.project_name,
                        "stage": stage(d), "waiting": [[w.party, w.what] for w in waiting_for(d)],
                        "came": [f"{m.kind}:{m.documents}" if m.documents else m.kind for m in messages],
                        "deadlines": [{"name": x.name, "due": x.due.isoformat(), "state": x.state,
                                       "late": x.state == "open" and x.due < today} for x in deadlines]})
        return out
