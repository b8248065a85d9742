"""How fast does the bot work through a backlog, against bare fetch + parse, and does its memory stay flat?

    .venv/bin/python bench/backlog.py [--mails 2000] [--timeout 150]

In one run, on a private Dovecot and a LocalSmtp on 127.0.0.1 (in a fresh temporary folder):

  1. `--mails` mails of a season are appended to the Worldline INBOX before the bot starts:
     ~30 % with order forms (new projects, FR/NL, 70 % complete; corrected forms and resends in
     their threads), and the rest: clients' replies in dossier threads (a few from colleagues
     not linked to the dossier), Worldline staff confirmations, signed scans (PDF with no text
     layer) with identity-card photos, signed conventions (PDF), out-of-office replies,
     newsletters and bounces, in the order they would come (each dossier's form first).
  2. bare baseline, same mails, same server: one imapclient connection fetches each message by
     UID with BODY.PEEK[] ONE BY ONE (as the bot's watcher does) and runs
     mailbot.mail.parse.parse_mail on it; the same in batches of 100 UIDs per FETCH is shown too.
  3. the bot: `python -m mailbot run` (its own process; default settings, scheduler on) drains
     the INBOX; done when the watcher's FolderState.last_uid reaches the last UID. Its VmRSS
     (/proc/PID/status) is sampled every second meanwhile. While it drains, the bot also sends
     its answers and reads its own copies (BOSA in copy, the Sent folder), as in production.

Prints mails/second for both and the ratio (goal: the bot at least half the one-by-one bare
throughput), and the daemon's RSS at start, peak and end (goal: flat).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlmodel import Session, func, select

from _world import (
    BOSA,
    WL,
    WL_STAFF,
    BenchWorld,
    FormFactory,
    children,
    client_address,
    cpu_seconds,
    dovecot_version,
    group_cpu_seconds,
    machine,
    project_name,
    readers_rss,
    vm_status,
    wait_until,
)
from mailbot import outbox
from mailbot.mail.parse import parse_mail
from mailbot.season import XLSX, Mail, brussels, jpeg_bytes, pdf_bytes, scan_pdf
from mailbot.store.models import FolderState, Message

START = brussels(2027, 2, 1, 8)


def backlog(total: int, seed: int = 20270201) -> tuple[list[bytes], dict[str, int]]:
    """The mails in the order they arrive, and how many of each kind."""
    rnd = random.Random(seed)
    forms = FormFactory()
    share = lambda fraction: round(total * fraction)  # noqa: E731
    n_dossiers = share(0.225)
    timed: list[tuple[float, str, Mail]] = []

    def at(t: float) -> dt.datetime:
        return START + dt.timedelta(days=28 * t)

    def add(t: float, kind: str, mail: Mail) -> None:
        mail.at = at(t)
        timed.append((t, kind, mail))

    dossiers = []
    for n in range(n_dossiers):
        lang = "nl" if n % 3 == 1 else "fr"
        complete = rnd.random() < 0.7
        d = {"n": n, "lang": lang, "complete": complete, "sender": client_address(n),
             "project": project_name(n, lang), "mid": f"<form{n}.{seed}@{client_address(n).split('@')[1]}>",
             "t": rnd.uniform(0, 0.55)}
        d["subject"] = (f"BOSA M1036 - Bon de commande – {d['project']}" if lang == "fr"
                        else f"BOSA M1036 - Bestelbon – {d['project']}")
        d["file"] = "Bon de commande_WL_M1036_FR_V2.2.xlsx" if lang == "fr" else "Bestelbon_WL_M1036_NL_V2.2.xlsx"
        variant = lang if complete else f"{lang}-problems"
        body = "Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande.\n" if lang == "fr" else \
            "Goedemiddag,\n\nIn bijlage onze bestelbon.\n"
        add(d["t"], "form (new project)", Mail(START, d["sender"], [WL], d["subject"], body, cc=[BOSA],
                                               attachments=[(d["file"], forms.make(variant, d["project"]), XLSX)],
                                               message_id=d["mid"]))
        d["complete_at"] = d["t"] if complete else None
        dossiers.append(d)

    def reply_subject(d) -> str:
        return f"RE: {d['subject']}"

    # Corrected forms for the incomplete ones, a few resends of complete ones: ~30 % of all mail has a form.
    incomplete = [d for d in dossiers if not d["complete"]]
    for d in incomplete:
        t = d["t"] + rnd.uniform(0.01, 0.1)
        add(t, "form (corrected, in thread)", Mail(START, d["sender"], [WL], reply_subject(d), "Voici le bon corrigé.",
                                                   cc=[BOSA], attachments=[(d["file"].replace(".xlsx", " v2.xlsx"),
                                                                            forms.make(d["lang"], d["project"]), XLSX)],
                                                   message_id=f"<fix{d['n']}.{seed}@x.example.net>",
                                                   in_reply_to=d["mid"]))
        d["complete_at"] = t
    resends = max(0, share(0.30) - n_dossiers - len(incomplete))
    for d in rnd.sample([d for d in dossiers if d["complete"]], resends):
        add(d["t"] + rnd.uniform(0.01, 0.05), "form (resent, in thread)",
            Mail(START, d["sender"], [WL], reply_subject(d), "Je vous renvoie le bon de commande.", cc=[BOSA],
                 attachments=[(d["file"], forms.make(d["lang"], d["project"]), XLSX)],
                 message_id=f"<again{d['n']}.{seed}@x.example.net>", in_reply_to=d["mid"]))

    # Worldline confirms, then the client sends the signed scan and the identity card.
    confirmed = rnd.sample(dossiers, share(0.075))
    for k, d in enumerate(confirmed):
        t = d["complete_at"] + rnd.uniform(0.01, 0.1)
        staff_mid = f"<wl{d['n']}.{seed}@worldline.localhost>"
        add(t, "staff confirmation", Mail(START, f"Worldline ecom-belgium <{WL_STAFF}>", [d["sender"]], reply_subject(d),
                                          "Bonjour,\n\nVotre bon de commande est complet. Merci de nous renvoyer la "
                                          "version signée et une copie de la carte d'identité.\n\nWorldline",
                                          cc=[BOSA], message_id=staff_mid, in_reply_to=d["mid"]))
        add(t + rnd.uniform(0.01, 0.2), "signed scan + ID photo",
            Mail(START, d["sender"], [WL], reply_subject(d), "Bonjour, voici les documents demandés.", cc=[BOSA],
                 attachments=[(f"scan_{k:03d}.pdf", scan_pdf(), "application/pdf"),
                              (f"IMG_{2000 + k}.jpg", jpeg_bytes(seed=k), "image/jpeg")],
                 message_id=f"<scan{d['n']}.{seed}@x.example.net>", in_reply_to=staff_mid))
    for d in rnd.sample(dossiers, share(0.075)):
        add(d["t"] + rnd.uniform(0.0, 0.3), "signed convention (PDF)",
            Mail(START, d["sender"], [BOSA], f"Convention d'utilisation ePayment – {d['project']}",
                 "Bonjour,\n\nVoici la convention signée.", attachments=[
                     ("Convention utilisation_E-Payment_FR_2.2 signée.pdf",
                      pdf_bytes(f"Convention d'utilisation E-Payment - {d['project']} - signee"), "application/pdf")],
                 message_id=f"<conv{d['n']}.{seed}@x.example.net>"))

    # Clients' replies in their threads; one in ten from a colleague the dossier does not know.
    for k in range(share(0.20)):
        d = rnd.choice(dossiers)
        stranger = k % 10 == 0
        sender = f"collegue{k}@{d['sender'].split('@')[1]}" if stranger else d["sender"]
        add(d["t"] + rnd.uniform(0.005, 0.45), "reply in a thread",
            Mail(START, sender, [WL], reply_subject(d), "Bonjour,\n\nOù en est notre dossier ? Merci.\n", cc=[BOSA],
                 message_id=f"<reply{k}.{seed}@x.example.net>", in_reply_to=d["mid"]))

    # Robots and lists.
    for k in range(share(0.125)):
        d = rnd.choice(dossiers)
        subject = (f"Réponse automatique : {d['subject']}" if k % 2 else f"Automatisch antwoord: {d['subject']}")
        add(d["t"] + rnd.uniform(0.001, 0.2), "auto-reply",
            Mail(START, d["sender"], [WL], subject, "Je suis absent jusqu'au lundi. / Ik ben afwezig tot maandag.",
                 headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
                 message_id=f"<ooo{k}.{seed}@x.example.net>"))
    for k in range(share(0.10)):
        add(rnd.random(), "newsletter",
            Mail(START, f"ePayment News <news{k % 7}@payments-newsletter.example.com>", [WL],
                 f"Nouveautés paiements en ligne – n° {k}", "Notre lettre d'information.\n" * 40,
                 headers={"List-Id": f"<news{k % 7}.payments-newsletter.example.com>", "Precedence": "bulk",
                          "List-Unsubscribe": "<mailto:unsubscribe@payments-newsletter.example.com>"},
                 message_id=f"<news{k}.{seed}@payments-newsletter.example.com>"))
    done = len(timed)
    for k in range(total - done):
        d = rnd.choice(dossiers)
        add(rnd.uniform(d["t"], 1.0), "bounce",
            Mail(START, f"MAILER-DAEMON@mx.{d['sender'].split('@')[1]}", [WL], "Undelivered Mail Returned to Sender",
                 "This is the mail system.\n\nI'm sorry to have to inform you that your message could not be delivered.",
                 headers={"Auto-Submitted": "auto-replied"}, message_id=f"<bounce{k}.{seed}@x.example.net>"))
    timed.sort(key=lambda item: item[0])
    kinds: dict[str, int] = {}
    for _, kind, _ in timed:
        kinds[kind] = kinds.get(kind, 0) + 1
    return [mail.delivered() for _, _, mail in timed], kinds  # stamped as the sandbox's server delivers them


def bare(world: BenchWorld, batch: int) -> tuple[int, float, int]:
    """(mails, seconds, bytes) for fetch BODY.PEEK[] by UID (`batch` UIDs per FETCH) + parse_mail."""
    client = world.imap("worldline", folder=None)
    client.select_folder("INBOX", readonly=True)
    uids = sorted(client.search(["ALL"]))
    size = 0
    started = time.perf_counter()
    for i in range(0, len(uids), batch):
        chunk = uids[i:i + batch]
        data = client.fetch(chunk, ["BODY.PEEK[]"])
        for uid in chunk:
            raw = data[uid][b"BODY[]"]
            size += len(raw)
            parse_mail(raw)
    seconds = time.perf_counter() - started
    client.logout()
    return len(uids), seconds, size


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop, self.readers = pid, [], threading.Event(), 0

    def run(self) -> None:
        started = time.perf_counter()
        while not self.stop.is_set():
            status = vm_status(self.pid)
            if "VmRSS" in status:
                self.samples.append((time.perf_counter() - started, status["VmRSS"], status.get("VmHWM", 0)))
                self.readers = max(self.readers, readers_rss(self.pid))
            self.stop.wait(1.0)



def bare_rates(world: BenchWorld) -> tuple[int, float, float]:
    """The baseline, printed: bare fetch + parse of the same mails, one by one and 100 a FETCH;
    the count of mails and both rates (mails/s)."""
    count, one_s, size = bare(world, batch=1)
    _, batch_s, _ = bare(world, batch=100)
    bare_rate, batch_rate = count / one_s, count / batch_s
    print(f"bare fetch + parse_mail, one by one: {count} mails in {one_s:.2f} s = {bare_rate:7.1f} mails/s "
          f"({size / one_s / 1e6:.1f} MB/s)", flush=True)
    print(f"bare fetch + parse_mail, 100 a FETCH: {count} mails in {batch_s:.2f} s = {batch_rate:7.1f} mails/s",
          flush=True)
    return count, bare_rate, batch_rate


def inbox_last_uid(world: BenchWorld, engine) -> int:
    """The last UID the bot has done in the Worldline INBOX (0 before its database exists)."""
    if not world.db_path.exists():
        return 0
    try:
        with Session(engine) as session:
            row = session.exec(select(FolderState).where(FolderState.mailbox == "worldline",
                                                         FolderState.folder == "INBOX")).first()
    except Exception:  # noqa: BLE001 - not created yet
        return 0
    return row.last_uid if row else 0

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds the bot gets to drain the backlog")
    parser.add_argument("--outbox-timeout", type=float, default=60.0,
                        help="seconds to wait, after the drain, for the outbox to be sent")
    parser.add_argument("--profile", metavar="FILE", help="record the daemon with py-spy (collapsed stacks to FILE) "
                        "while it drains, and print its top costs; py-spy from $PY_SPY or PATH")
    args = parser.parse_args()

    began = time.perf_counter()
    print(f"machine: {machine()}; {dovecot_version()}")
    raws, kinds = backlog(args.mails)
    total_bytes = sum(map(len, raws))
    print(f"{len(raws)} mails, {total_bytes / 1e6:.1f} MB, built in {time.perf_counter() - began:.1f} s:")
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {count:5}  {kind}")
    with BenchWorld() as world:
        client = world.imap("worldline")
        started = time.perf_counter()
        for raw in raws:
            client.append("INBOX", raw)
        last_uid = max(client.search(["ALL"]))
        client.logout()
        print(f"appended to the Worldline INBOX in {time.perf_counter() - started:.1f} s (last UID {last_uid})")
        del raws

        count, bare_rate, batch_rate = bare_rates(world)
        engine = world.engine()

        def inbox_uid() -> int:
            return inbox_last_uid(world, engine)

        dovecot_pid = world.dovecot.pid
        cpu_before = (group_cpu_seconds(dovecot_pid), cpu_seconds())
        spawned = time.perf_counter()
        proc = world.start_daemon()
        sampler = RssSampler(proc.pid)
        sampler.start()
        spy = start_profiler(proc.pid, args.profile) if args.profile else None
        first = wait_until(lambda: proc.poll() is not None or inbox_uid() > 0, 60, 0.1)
        first_at = time.perf_counter()
        if proc.poll() is not None or not first:
            raise SystemExit(f"the daemon did not start:\n{world.daemon_tail()}")
        rss_at_first = vm_status(proc.pid).get("VmRSS", 0)
        print(f"bot: first mail done {first_at - spawned:.2f} s after the spawn; draining ...", flush=True)
        progress = []
        deadline = spawned + args.timeout
        while time.perf_counter() < deadline and proc.poll() is None:
            uid = inbox_uid()
            progress.append((time.perf_counter() - spawned, uid))
            if uid >= last_uid:
                break
            time.sleep(0.25)
        drained_at = time.perf_counter()
        done_uid = inbox_uid()
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its file on SIGINT
            spy.wait(30)
        rss_end = vm_status(proc.pid)
        cpu = (cpu_seconds(proc.pid), group_cpu_seconds(dovecot_pid) - cpu_before[0], cpu_seconds() - cpu_before[1],
               sum(cpu_seconds(c) for c in children(proc.pid)))
        sampler.stop.set()
        sampler.join()
        with Session(engine) as session:
            messages = session.exec(select(func.count()).select_from(Message)).one()
            states = outbox.counts(session)

        def unsent() -> int:
            with Session(engine) as session:
                return outbox.unsent_count(session)

        emptied = wait_until(lambda: proc.poll() is not None or unsent() == 0, args.outbox_timeout, 0.5)
        outbox_wait = time.perf_counter() - drained_at if emptied and proc.poll() is None else None
        with Session(engine) as session:
            sent = outbox.counts(session).get(outbox.OutboxState.SENT, 0)
        status = world.stop_daemon()
        if status != 0:
            print(f"daemon exit status {status}:\n{world.daemon_tail()}")

    print()
    seconds = drained_at - spawned
    # The bot's notes to staff (needs_human) land in the same INBOX, after the backlog's UIDs.
    extra, done_uid = max(0, done_uid - last_uid), min(done_uid, last_uid)
    rate = done_uid / seconds
    steady = (done_uid - 1) / (drained_at - first_at) if drained_at > first_at else 0.0
    drained = done_uid >= last_uid
    print(f"bot: {done_uid} of {last_uid} INBOX mails (and {extra} of its own notes to staff that came in meanwhile) "
          f"in {seconds:.1f} s from the spawn = {rate:6.1f} mails/s "
          f"({steady:.1f} mails/s after the first mail){'' if drained else '  -- NOT DRAINED within the timeout'}")
    for label, q in (("25 %", 0.25), ("50 %", 0.5), ("75 %", 0.75)):
        t = next((t for t, uid in progress if uid >= q * last_uid), None)
        if t is not None:
            print(f"     {label} of the backlog after {t:.1f} s")
    print(f"     messages recorded: {messages} (the INBOX mails plus the bot's own answers and notes read back "
          f"from the BOSA inbox, the Sent folder and the INBOX); outbox then: {states}")
    print(f"     the outbox was empty {f'{outbox_wait:.1f} s' if outbox_wait is not None else f'NOT within {args.outbox_timeout:.0f} s'} "
          f"after the INBOX was done ({sent} answers and notes sent in all)")
    print(f"     CPU while it drained ({seconds:.0f} s): the daemon {cpu[0]:.1f} s ({100 * cpu[0] / seconds:.0f} % of a core), "
          f"its reader process {cpu[3]:.1f} s, Dovecot {cpu[1]:.1f} s, this process (LocalSmtp delivering the answers, polling) {cpu[2]:.1f} s")
    print(f"ratio bot / bare one-by-one: {rate / bare_rate:.2f} (goal >= 0.5: {'met' if rate / bare_rate >= 0.5 and drained else 'NOT met'}); "
          f"bot / bare 100-a-FETCH: {rate / batch_rate:.2f}")
    samples = sampler.samples
    if samples:
        peak = max(rss_end.get("VmRSS", 0), *(s[1] for s in samples))
        hwm = max(rss_end.get("VmHWM", 0), *(s[2] for s in samples))
        quarter = next((s[1] for s in samples if s[0] >= (first_at - spawned) + (drained_at - first_at) / 4), samples[-1][1])
        print(f"daemon RSS (MB): at the first mail {rss_at_first / 1024:.1f}, at 25 % of the drain {quarter / 1024:.1f}, "
              f"peak sampled {peak / 1024:.1f} (VmHWM {hwm / 1024:.1f}), end {rss_end.get('VmRSS', 0) / 1024:.1f}; "
              f"growth from 25 % to the end {(rss_end.get('VmRSS', 0) - quarter) / 1024:+.1f} MB")
        print(f"     its reader process (parsing, form checks, PDF text ahead): peak sampled {sampler.readers / 1024:.1f} MB")
        every = max(1, len(samples) // 12)
        print("     samples (s: MB): " + ", ".join(f"{t:.0f}: {rss / 1024:.0f}" for t, rss, _ in samples[::every]))
    if args.profile:
        print_profile(args.profile)
    print(f"total run time {time.perf_counter() - began:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if drained else 1


def start_profiler(pid: int, out: str) -> subprocess.Popen:
    binary = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if binary is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy, or set PY_SPY to its binary)")
    # --gil: only the thread holding the GIL is sampled, so the samples add up to the Python CPU time.
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", "100", "--threads", "--gil",
                             "--format", "raw", "--output", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: str, top: int = 22) -> None:
    """Where the daemon's Python time went (GIL-holding samples): per thread, the mailbot functions
    with the largest inclusive share, and the libraries where the time was finally spent."""
    frame = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
    per_thread: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        print(f"profile: cannot read {path}: {exc}")
        return
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\):?\s*", "", frames[0]) or "?"
        thread = re.sub(r"_\d+$", "_*", thread)
        per_thread[thread] += n
        total += n
        parsed = [m.groups() for f in frames[1:] if (m := frame.match(f))]
        for name, file in {(name, file) for name, file in parsed if file.startswith("mailbot/")}:
            inclusive[f"{name} ({file})"] += n
        if parsed:
            file = parsed[-1][1]
            lib = file.split("/")[0] if "/" in file else file
            leaf[lib.removesuffix(".py")] += n
    if not total:
        print(f"profile: no samples in {path}")
        return
    print()
    print(f"profile ({path}, {total} samples holding the GIL, 100 a second): share per thread")
    print("  " + ", ".join(f"{t} {100 * n / total:.0f} %" for t, n in per_thread.most_common(8)))
    print("mailbot functions, inclusive share of all samples:")
    for name, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {name[:110]}")
    print("where the time was finally spent (the sampled frame's package or module):")
    print("  " + ", ".join(f"{lib} {100 * n / total:.0f} %" for lib, n in leaf.most_common(14)))


if __name__ == "__main__":
    raise SystemExit(main())
