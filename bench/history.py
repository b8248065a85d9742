"""How fast does the bot file a mailbox's history at its first start, against bare fetch + parse?

    .venv/bin/python bench/history.py [--mails 10000] [--timeout 1800]

In one run, on a private Dovecot and a LocalSmtp on 127.0.0.1 (in a fresh temporary folder):

  1. `--mails` mails of bench/backlog.py's season (order forms, replies, staff confirmations,
     signed scans with ID photos, conventions, out-of-office replies, newsletters, bounces), its
     four weeks ending two days ago, are appended to the Worldline INBOX with each mail's date as
     its INTERNALDATE: one connection, MULTIAPPEND with LITERAL+ (nothing waits between mails).
  2. bare baseline, same mails, same server: one imapclient connection fetches each message by
     UID with BODY.PEEK[] one by one (as backlog.py does) and parses it with parse_mail; the same
     with 100 UIDs a FETCH is shown too.
  3. the bot: `python -m mailbot run` (its own process; default settings, scheduler on, no
     `history_before`) starts for the first time on that mailbox; done when the watcher's
     FolderState.last_uid reaches the last UID.

Prints mails/second for both and their ratio, and what the import did: dossiers, deadlines by
state, decisions, the outbox and what reached the SMTP server (goal: no mail to any client, no
warning or escalation; staff digests only if the digest's time came meanwhile).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import email.utils
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backlog as season
from sqlmodel import Session, func, select

from _world import BenchWorld, children, cpu_seconds, dovecot_version, group_cpu_seconds, machine, wait_until
from mailbot.history import NOT_ANSWERED
from mailbot.store.models import Deadline, Decision, Dossier, Installation, Message, OutboxMail


def dated(raws: list[bytes]) -> list[tuple[bytes, dt.datetime]]:
    """Each mail with its Date header as the time it reached the server."""
    out = []
    for raw in raws:
        head = raw[:raw.find(b"\n\n") if b"\n\n" in raw else 4000].decode("ascii", "replace")
        line = next(line for line in head.splitlines() if line.lower().startswith("date:"))
        out.append((raw, email.utils.parsedate_to_datetime(line[5:].strip())))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds the bot gets to file the history")
    args = parser.parse_args()

    began = time.perf_counter()
    print(f"machine: {machine()}; {dovecot_version()}")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    season.START = now - dt.timedelta(days=30)  # the season's four weeks end two days ago
    raws, kinds = season.backlog(args.mails)
    items = dated(raws)
    del raws
    total_bytes = sum(len(raw) for raw, _ in items)
    print(f"{len(items)} mails, {total_bytes / 1e6:.1f} MB, built in {time.perf_counter() - began:.1f} s, "
          f"dated {min(w for _, w in items):%Y-%m-%d} to {max(w for _, w in items):%Y-%m-%d %H:%M} UTC:")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {count:6}  {kind}")
    with BenchWorld(prefix="mailbot-history-") as world:
        del world.data["daemon"]["history_before"]  # the first start decides what is history
        seconds = world.append_dated("worldline", items)
        client = world.imap("worldline")
        last_uid = max(client.search(["ALL"]))
        client.logout()
        print(f"appended to the Worldline INBOX in {seconds:.1f} s ({len(items) / seconds:.0f} mails/s, "
              f"MULTIAPPEND; last UID {last_uid})")
        del items

        count, bare_rate, batch_rate = season.bare_rates(world)
        engine = world.engine()

        def inbox_uid() -> int:
            return season.inbox_last_uid(world, engine)

        dovecot_pid = world.dovecot.pid
        cpu_before = group_cpu_seconds(dovecot_pid)
        spawned = time.perf_counter()
        proc = world.start_daemon()
        first = wait_until(lambda: proc.poll() is not None or inbox_uid() > 0, 120, 0.1)
        first_at = time.perf_counter()
        if proc.poll() is not None or not first:
            raise SystemExit(f"the daemon did not start:\n{world.daemon_tail()}")
        print(f"bot: first mail filed {first_at - spawned:.2f} s after the spawn; importing ...", flush=True)
        progress = []
        deadline = spawned + args.timeout
        while time.perf_counter() < deadline and proc.poll() is None:
            uid = inbox_uid()
            progress.append((time.perf_counter() - spawned, uid))
            if uid >= last_uid:
                break
            time.sleep(0.5)
        done_at = time.perf_counter()
        done_uid = min(inbox_uid(), last_uid)
        cpu = (cpu_seconds(proc.pid), group_cpu_seconds(dovecot_pid) - cpu_before,
               sum(cpu_seconds(c) for c in children(proc.pid)))
        time.sleep(3.0)  # anything the import queued would be on its way now
        with Session(engine) as session:
            started = session.exec(select(Installation)).one().first_started_at
            messages = session.exec(select(func.count()).select_from(Message)).one()
            dossiers = session.exec(select(func.count()).select_from(Dossier)).one()
            open_dossiers = session.exec(select(func.count()).select_from(Dossier)
                                         .where(Dossier.access_sent == False)).one()  # noqa: E712
            deadlines = dict(session.exec(select(Deadline.state, func.count()).group_by(Deadline.state)).all())
            not_answered = session.exec(select(func.count()).select_from(Decision)
                                        .where(Decision.reason == NOT_ANSWERED)).one()
            outbox = dict(session.exec(select(OutboxMail.purpose, func.count()).group_by(OutboxMail.purpose)).all())
        arrivals = collections.Counter(a.purpose for a in world.smtp.arrivals)
        status = world.stop_daemon()
        if status != 0:
            print(f"daemon exit status {status}:\n{world.daemon_tail()}")

    print()
    seconds = done_at - spawned
    rate = done_uid / seconds
    steady = (done_uid - 1) / (done_at - first_at) if done_at > first_at else 0.0
    imported = done_uid >= last_uid
    print(f"bot: first start at {started:%Y-%m-%d %H:%M:%S} UTC; {done_uid} of {last_uid} historical mails filed in "
          f"{seconds:.1f} s from the spawn = {rate:6.1f} mails/s ({steady:.1f} mails/s after the first mail)"
          f"{'' if imported else '  -- NOT DONE within the timeout'}")
    for label, q in (("25 %", 0.25), ("50 %", 0.5), ("75 %", 0.75)):
        t = next((t for t, uid in progress if uid >= q * last_uid), None)
        if t is not None:
            print(f"     {label} after {t:.1f} s")
    print(f"     CPU meanwhile ({seconds:.0f} s): the daemon {cpu[0]:.1f} s ({100 * cpu[0] / seconds:.0f} % of a core), "
          f"its reader process {cpu[2]:.1f} s, Dovecot {cpu[1]:.1f} s")
    print(f"     recorded: {messages} messages, {not_answered} with the decision {NOT_ANSWERED!r}; "
          f"{dossiers} dossiers ({open_dossiers} open, for the next digest to list); deadlines {deadlines}")
    to_clients = {p: n for p, n in outbox.items() if p not in ("digest", "watchdog")}
    alerts = {p: n for p, n in outbox.items() if p in ("warning", "escalation")}
    print(f"     outbox: {outbox or 'empty'}; at the SMTP server: {dict(arrivals) or 'nothing'}")
    print(f"     goal no mail to a client: {'met' if not to_clients else 'NOT met'}; "
          f"goal no warning or escalation: {'met' if not alerts else 'NOT met'}")
    print(f"ratio bot / bare one-by-one: {rate / bare_rate:.2f}; bot / bare 100-a-FETCH: {rate / batch_rate:.2f}")
    print(f"total run time {time.perf_counter() - began:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if imported and not to_clients and not alerts else 1


if __name__ == "__main__":
    raise SystemExit(main())
