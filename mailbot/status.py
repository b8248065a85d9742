"""`mailbot status`: per mailbox the last contact and UID, the outbox, the quarantine, deadlines."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from mailbot.config import Settings
from mailbot.outbox import copies_owed_count, counts
from mailbot.store.models import Deadline, Dossier, FolderState, Message


def status(engine: Engine, settings: Settings, now: dt.datetime | None = None) -> dict:
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.astimezone(settings.process.zone).date()
    with Session(engine) as s:
        folders = [{"mailbox": f.mailbox, "folder": f.folder, "uidvalidity": f.uidvalidity, "last_uid": f.last_uid,
                    "last_contact": f.last_contact.isoformat() if f.last_contact else None,
                    "last_error": f.last_error, "reported_down": f.reported_down}
                   for f in s.exec(select(FolderState).order_by(FolderState.mailbox, FolderState.folder))]
        outbox = counts(s)
        copies_owed = copies_owed_count(s)
        quarantined = [{"id": m.id, "subject": m.subject, "sender": m.sender, "reason": m.status_reason,
                        "received_at": m.received_at.isoformat()}
                       for m in s.exec(select(Message).where(Message.status == "quarantined")
                                       .order_by(col(Message.id)))]
        rows = s.exec(select(Deadline, Dossier.reference).join(Dossier, col(Dossier.id) == Deadline.dossier_id)
                      .where(Deadline.state == "open", Deadline.due <= today).order_by(col(Deadline.due))).all()
        deadlines = [{"dossier": ref, "deadline": d.name, "due": d.due.isoformat(), "overdue": d.due < today}
                     for d, ref in rows]
    return {"at": now.isoformat(), "folders": folders, "outbox": outbox, "sent_copies_owed": copies_owed,
            "quarantined": quarantined,
            "deadlines_due": [d for d in deadlines if not d["overdue"]],
            "deadlines_overdue": [d for d in deadlines if d["overdue"]]}


def render_status(report: dict) -> str:
    lines = [f"mailbot status at {report['at'][:19]}", "", "Mailboxes:"]
    for f in report["folders"] or [{"mailbox": "-", "folder": "(never connected)", "last_uid": 0,
                                    "last_contact": None, "last_error": "", "reported_down": False}]:
        down = "  DOWN" if f["reported_down"] else ""
        error = f"  last error: {f['last_error']}" if f["last_error"] else ""
        lines.append(f"  {f['mailbox']:10} {f['folder']:8} last UID {f['last_uid']:<6} last contact "
                     f"{(f['last_contact'] or 'never')[:19]}{down}{error}")
    box = report["outbox"]
    lines += ["", "Outbox: " + (", ".join(f"{n} {k}" for k, n in sorted(box.items())) or "empty")]
    if report["sent_copies_owed"]:
        lines.append(f"  sent, their copy not yet in the Sent folder: {report['sent_copies_owed']}")
    lines += ["", f"Quarantined mail: {len(report['quarantined'])}"]
    lines += [f"  #{q['id']} {q['received_at'][:16]} {q['sender']}: {q['subject'][:60]!r} – {q['reason']}"
              for q in report["quarantined"]]
    for key, title in (("deadlines_due", "Deadlines due today"), ("deadlines_overdue", "Deadlines overdue")):
        lines += ["", f"{title}: {len(report[key])}"]
        lines += [f"  {d['dossier']} {d['deadline']} due {d['due']}" for d in report[key]]
    return "\n".join(lines)
