"""`mailbot demo`: a season of mail through a real local sandbox, narrated as it goes.

The bot runs exactly as `mailbot run` does (IMAP watchers, pipeline, outbox over SMTP), on a
simulated clock: each mail is sent through the sandbox's SMTP server at its time in the
season, and the scheduled jobs (sweeps, reminders, digests) run at their times in between,
so a late deadline shows up in seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import json
import smtplib
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from mailbot.daemon import Daemon
from mailbot.outbox import unsent_count, written_after
from mailbot.replay import job_times
from mailbot.season import Mail, season
from mailbot.store.models import Message, Sighting
from mailbot.transport.local import sandbox_for, sandbox_settings
from mailbot.transport.sandbox import imap_append


@dataclass
class SimClock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now


def _when(at: dt.datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%a %d %b %H:%M")


class Demo:
    def __init__(self, folder: Path, out=print, until_days: int = 28) -> None:
        self.out, self.until_days = out, until_days
        self.sandbox, data = sandbox_for(folder=folder)
        self.data = data

    def run(self) -> int:
        with self.sandbox:
            settings = sandbox_settings(self.sandbox, self.data)
            mails = season(settings)
            self.clock = SimClock(mails[0].at - dt.timedelta(hours=1))
            self.daemon = Daemon(settings, clock=self.clock, with_scheduler=False, history=False)
            self.settings = settings
            loop = self.loop = asyncio.new_event_loop()
            thread = threading.Thread(target=lambda: loop.run_until_complete(self.daemon.serve()), daemon=True)
            thread.start()
            self.shown = 0
            try:
                self._season(mails)
            finally:
                loop.call_soon_threadsafe(self.daemon.stop.set)
                thread.join(30)
            self._summary()
        return 0

    def _season(self, mails: list[Mail]) -> None:
        # Nothing that changes from run to run (folder, ports, Message-IDs) is narrated.
        self.out(f"mailbot demo: a season of {len(mails)} mails through a local IMAP/SMTP sandbox "
                 "on 127.0.0.1, on a simulated clock.\n")
        for mail in mails:
            self._jobs_until(mail.at)
            self.clock.now = mail.at
            self.out(f"{_when(mail.at, self.settings.process.zone)}  {mail.note}")
            self._settle(mail, self._deliver(mail))
        self._jobs_until(mails[-1].at + dt.timedelta(days=self.until_days // 2))

    def _deliver(self, mail: Mail) -> set[str]:
        """Send the mail; the places ("worldline/INBOX") where the bot will find it."""
        raw = mail.to_bytes()
        recipients = [*mail.to, *mail.cc]
        with smtplib.SMTP(self.sandbox.smtp_host, self.sandbox.smtp_port, timeout=10) as smtp:
            smtp.sendmail(mail.mail_from, recipients, raw.replace(b"\n", b"\r\n"))
        places = set()
        for address in recipients:
            if name := self.settings.mailbox_of(address.split("<")[-1].rstrip(">")):
                imap = self.settings.mailboxes[name].imap
                assert imap is not None  # the sandbox's mailboxes are on IMAP
                places.add(f"{name}/{imap.inbox}")
        if name := self.settings.mailbox_of(mail.sender.split("<")[-1].rstrip(">")):
            # What staff send from their mail program lands in their Sent folder.
            imap_append(self.sandbox.imap_host, self.sandbox.imap_port, *self.sandbox.credentials(name), raw, "Sent")
            places.add(f"{name}/Sent")
        return places

    def _settle(self, mail: Mail, expected: set[str]) -> None:
        """Wait until the bot has read every copy of the mail (in each of the `expected` places)
        and sent what it decided: the narration is then the same from run to run."""
        mid = (mail.message_id or "").strip("<>")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with Session(self.daemon.engine) as s:
                msg = s.exec(select(Message).where(Message.message_id == mid)).first() if mid else None
                done = msg is not None and msg.status != "received"
                pending = unsent_count(s)
                places = sorted({f"{p.mailbox}/{p.folder}" for p in
                                 s.exec(select(Sighting).where(Sighting.message_pk == msg.id))}) if msg else []
                if msg is not None and done and not pending and expected <= set(places):
                    docs = f" [{msg.documents}]" if msg.documents else ""
                    self.out(f"      understood: {msg.kind}{docs}, dossier {self._ref(s, msg.dossier_id)}, "
                             f"seen in {', '.join(places)}")
                    self._show_sent(s)
                    return
            time.sleep(0.05)
        self.out("      (the bot did not finish this mail within 15 s)")

    def _jobs_until(self, end: dt.datetime) -> None:
        for at, job in job_times(self.clock.now, end, self.daemon.ctx):
            self.clock.now = at
            fut = asyncio.run_coroutine_threadsafe(self.daemon.job(job), self.loop)
            fut.result(30)
            self._drain()
            with Session(self.daemon.engine) as s:
                self._show_sent(s, quiet_digests=True)
        self.clock.now = max(self.clock.now, end)

    def _drain(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with Session(self.daemon.engine) as s:
                if not unsent_count(s):
                    return
            time.sleep(0.05)

    def _show_sent(self, s: Session, quiet_digests: bool = False) -> None:
        rows = written_after(s, self.shown)
        for row in rows:
            assert row.id is not None  # read back
            self.shown = row.id
            if quiet_digests and row.purpose == "digest":
                continue
            detail = json.loads(row.detail)
            extra = ""
            if detail.get("problems"):
                extra = "  problems: " + ", ".join(f"{f}:{c}" for f, c in detail["problems"])
            if row.purpose in ("warning", "escalation"):
                extra = f" ({detail['deadline']} due {detail['due']})"
            cc = f" cc {', '.join(json.loads(row.cc))}" if json.loads(row.cc) else ""
            # Scheduled mail comes with no mail of the season's before it: it names its dossier.
            about = f" for {detail['dossier']}" if quiet_digests and detail.get("dossier") else ""
            when = f"{_when(row.created_at, self.settings.process.zone)}  " if quiet_digests else "      "
            self.out(f"{when}bot {row.state}: {row.purpose} [{row.language}] to {', '.join(json.loads(row.recipients))}"
                     f"{cc}{about}{extra}")

    @staticmethod
    def _ref(s: Session, dossier_id: int | None) -> str:
        from mailbot.store.models import Dossier

        dossier = s.get(Dossier, dossier_id) if dossier_id else None
        return dossier.reference if dossier else "none"

    def _summary(self) -> None:
        from mailbot.replay import dossier_summaries

        self.out("\nWhere each dossier stands:")
        for d in dossier_summaries(self.daemon.ctx, self.clock.now):
            waits = ", ".join(f"{what} ({party})" for party, what in d["waiting"]) or "nothing: done"
            late = [f"{x['name']} due {x['due']}" for x in d["deadlines"] if x["late"]]
            self.out(f"  {d['dossier']} {d['project']!r}: {d['stage']}; waiting for {waits}"
                     + (f"; LATE: {', '.join(late)}" if late else ""))
        self.out("\n" + self._smtp_count())

    def _smtp_count(self) -> str:
        """What the SMTP server took, by kind: the season's own mails (sent by the demo as
        clients and staff), the bot's mail to clients, its notes to staff, and the digests."""
        own = self.settings.own_addresses
        season = clients = staff = digests = 0
        assert self.sandbox.smtp is not None  # started with the sandbox
        for envelope in self.sandbox.smtp.envelopes:
            purpose = email.message_from_bytes(envelope.data)["X-Mailbot-Purpose"]
            if purpose is None:
                season += 1
            elif purpose == "digest":
                digests += 1
            elif all(r.lower() in own for r in envelope.rcpt_tos):
                staff += 1
            else:
                clients += 1
        return (f"The sandbox's SMTP server took {season + clients + staff + digests} mails: the season's {season} "
                f"mails, {clients} to clients (answers and reminders), {staff} notes to staff (warnings, "
                f"escalations, a person needed) and {digests} daily digests (one per team each business day, "
                "not narrated); none left this machine. `mailbot run` starts the same sandbox for you to write to.")


    def show_site(self) -> None:
        """The staff page on the season's database, as of the season's last day (its clock), with
        the sandbox's demo user a click away; until Ctrl-C."""
        import signal

        from mailbot.store.db import open_database
        from mailbot.web.server import address, bind, serve

        settings = self.settings
        engine = open_database(settings.database.url)
        sock = bind(settings, any_port_if_taken=True)

        async def main() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await serve(settings, engine, sock, stop, clock=self.clock)

        self.out(f"\nThe staff page on these dossiers, as of {_when(self.clock.now, settings.process.zone)}: "
                 f"{address(sock)} – sign in as the demo user {settings.web.demo_user}. Ctrl-C to end.")
        try:
            asyncio.run(main())
        finally:
            sock.close()
            engine.dispose()


def run_demo(folder: Path | None = None, out=print, web: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="mailbot-demo-") as tmp:
        demo = Demo(folder or Path(tmp), out)
        code = demo.run()
        if web:
            demo.show_site()
        return code
