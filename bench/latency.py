"""How long from a client's mail reaching the mailbox to the bot's answer reaching the SMTP server?

    .venv/bin/python bench/latency.py [--mails 200] [--floor-samples 60]

In one run, on a private Dovecot and a LocalSmtp on 127.0.0.1 (in a fresh temporary folder):

  floor  for `--floor-samples` of the same mails, appended to a mailbox the bot does not watch:
         a bare imapclient connection in IDLE notices the APPEND (Dovecot waits ~0.5 s before it
         tells), then a bare aiosmtplib.send() of a small message (new connection, like the bot's
         sender) reaches the same LocalSmtp. Measured before the bot is started.
  bot    `python -m mailbot run` on its own configuration (default limits; scheduler on), and
         `--mails` order-form mails appended one by one to the Worldline INBOX, each waiting for
         its answer before the next: time from the APPEND to the answer's arrival.

Both sides are timed in this process with time.perf_counter(): from just before the APPEND
command (on a connection already logged in) to the moment the SMTP server has the whole
message (end of DATA, before LocalSmtp delivers it into the local mailboxes).

The mails: real order forms (FR and NL, 70 % complete, 30 % with problems), each for its own
project from its own sender address, To Worldline with BOSA in copy, as clients send them. The
per-address RFC 3834 limit (10 answers a day) is left at its default: no address gets more
than one answer. After each answer the bot also reads its own copy in the BOSA inbox and in
the Worldline Sent folder, as it does in production.

Goal: bot p95 <= 3x floor p95.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosmtplib

from _world import (
    BOSA,
    WL,
    BenchWorld,
    FormFactory,
    client_address,
    dovecot_version,
    machine,
    percentile,
    project_name,
    wait_until,
)
from mailbot.season import XLSX, Mail, brussels


def form_mails(count: int) -> list[tuple[str, bytes]]:
    """(message_id, raw) of `count` order-form mails, each a new project from a new address."""
    forms = FormFactory()
    out = []
    for n in range(count):
        lang = "nl" if n % 3 == 1 else "fr"
        variant = lang + ("-problems" if n % 10 in (3, 6, 9) else "")
        project = project_name(n, lang)
        subject = (f"BOSA M1036 - Bon de commande – {project}" if lang == "fr"
                   else f"BOSA M1036 - Bestelbon – {project}")
        body = ("Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande.\n" if lang == "fr"
                else "Goedemiddag,\n\nIn bijlage onze bestelbon.\n")
        message_id = f"latency{n}.{time.time_ns()}@{client_address(n).split('@')[1]}"
        filename = "Bon de commande_WL_M1036_FR_V2.2.xlsx" if lang == "fr" else "Bestelbon_WL_M1036_NL_V2.2.xlsx"
        mail = Mail(brussels(2027, 3, 1, 9), client_address(n), [WL], subject, body, cc=[BOSA],
                    attachments=[(filename, forms.make(variant, project), XLSX)], message_id=f"<{message_id}>")
        out.append((message_id, mail.delivered()))  # stamped as the sandbox's SMTP server delivers it
    return out


def floor(world: BenchWorld, mails: list[tuple[str, bytes]]) -> tuple[list[float], list[float], list[float]]:
    """(total, IDLE notice, SMTP send) seconds for each mail, with no bot running."""
    watcher, writer = world.imap("floor"), world.imap("floor")
    loop = asyncio.new_event_loop()
    totals, notices, sends = [], [], []
    try:
        for message_id, raw in mails:
            watcher.idle()
            started = time.perf_counter()
            writer.append("INBOX", raw)
            noticed = None
            while noticed is None and time.perf_counter() - started < 10:
                for response in watcher.idle_check(timeout=1.0):
                    if len(response) > 1 and response[1] == b"EXISTS":
                        noticed = time.perf_counter()
            watcher.idle_done()
            if noticed is None:
                print(f"  floor: no IDLE notice for {message_id} within 10 s", flush=True)
                continue
            answer = EmailMessage()
            answer["From"], answer["To"], answer["Subject"] = WL, "client@floor.example.net", "Re: floor"
            answer["Message-ID"], answer["In-Reply-To"] = f"<floor.{message_id}>", f"<{message_id}>"
            answer.set_content("A small answer.\n" * 20)
            loop.run_until_complete(aiosmtplib.send(answer, hostname=world.smtp.host, port=world.smtp.port,
                                                    use_tls=False, start_tls=False, timeout=30))
            arrival = world.smtp.wait_reply(message_id, 10)
            if arrival is None:
                print(f"  floor: the SMTP server did not get the answer to {message_id}", flush=True)
                continue
            totals.append(arrival.at - started)
            notices.append(noticed - started)
            sends.append(arrival.at - noticed)
    finally:
        loop.close()
        for client in (watcher, writer):
            client.logout()
    return totals, notices, sends


def bot(world: BenchWorld, mails: list[tuple[str, bytes]], timeout: float) -> tuple[list[float], list[str]]:
    engine = world.engine()
    started = time.time()
    world.start_daemon()
    import datetime as dt

    since = dt.datetime.fromtimestamp(started, dt.timezone.utc)
    if not wait_until(lambda: world.proc.poll() is not None or world.watchers_connected(engine, since), 60, 0.1) \
            or world.proc.poll() is not None:
        raise SystemExit(f"the daemon did not start:\n{world.daemon_tail()}")
    print(f"  daemon up after {time.time() - started:.2f} s (pid {world.proc.pid})", flush=True)
    writer = world.imap("worldline")
    latencies, missed = [], []
    try:
        for n, (message_id, raw) in enumerate(mails, 1):
            t0 = time.perf_counter()
            writer.append("INBOX", raw)
            arrival = world.smtp.wait_reply(message_id, timeout)
            if arrival is None:
                missed.append(message_id)
                print(f"  bot: no answer to mail {n} within {timeout:.0f} s", flush=True)
                continue
            latencies.append(arrival.at - t0)
            if n % 50 == 0:
                print(f"  bot: {n} mails answered, last {latencies[-1]:.3f} s", flush=True)
    finally:
        writer.logout()
    return latencies, missed


def line(name: str, values: list[float]) -> str:
    return (f"{name:34} n={len(values):3}  p50 {percentile(values, 50):6.3f} s  p95 {percentile(values, 95):6.3f} s  "
            f"max {max(values):6.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=200, help="order-form mails sent to the bot, one by one")
    parser.add_argument("--floor-samples", type=int, default=60, help="mails measured for the floor")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one answer")
    args = parser.parse_args()

    began = time.perf_counter()
    print(f"machine: {machine()}; {dovecot_version()}")
    mails = form_mails(args.mails)
    sizes = sorted(len(raw) for _, raw in mails)
    print(f"{len(mails)} order-form mails, {sizes[0]:,}-{sizes[-1]:,} bytes, built in {time.perf_counter() - began:.1f} s")
    with BenchWorld(extra_users=("floor",)) as world:
        print(f"floor: {args.floor_samples} of the same mails into an unwatched mailbox ...", flush=True)
        totals, notices, sends = floor(world, mails[:args.floor_samples])
        world.smtp.arrivals.clear()
        print(f"bot: {len(mails)} mails into the Worldline INBOX, one at a time ...", flush=True)
        latencies, missed = bot(world, mails, args.timeout)
        purposes = {}
        for arrival in world.smtp.arrivals:
            purposes[arrival.purpose] = purposes.get(arrival.purpose, 0) + 1
        status = world.stop_daemon()
    print()
    print(line("floor: IDLE notice of the APPEND", notices))
    print(line("floor: bare aiosmtplib send", sends))
    print(line("floor: APPEND -> IDLE -> SMTP", totals))
    print(line("bot:   APPEND -> answer at SMTP", latencies))
    print(f"answers received by SMTP: {', '.join(f'{k} {v}' for k, v in sorted(purposes.items()))}; "
          f"mails with no answer: {len(missed)}; daemon exit status after SIGTERM: {status}")
    ratio = percentile(latencies, 95) / percentile(totals, 95)
    print(f"ratio bot p95 / floor p95: {ratio:.2f} (goal <= 3: {'met' if ratio <= 3 and not missed else 'NOT met'})")
    print(f"  (p50 ratio {percentile(latencies, 50) / percentile(totals, 50):.2f}; "
          f"bot p95 minus floor p95: {percentile(latencies, 95) - percentile(totals, 95):.3f} s)")
    print(f"total run time {time.perf_counter() - began:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
