"""The daemon against a real Dovecot and a real SMTP server (aiosmtpd), both on 127.0.0.1."""

import difflib
import email
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mailworld import CLIENT, WL, World, copy_migrated_database, form_mail, purpose, to_toml, wait_for
from sqlmodel import select

from mailbot.season import Mail, brussels
from mailbot.store.models import Deadline, Message, OutboxMail

pytestmark = pytest.mark.integration  # the season below starts its own sandbox


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch, migrated_database):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    copy_migrated_database(migrated_database, w.settings.database.url)
    yield w
    w.stop()


def test_mail_in_both_inboxes_is_answered_once(world, imap_connect):
    world.start()
    raw = form_mail(1).to_bytes()
    world.append("worldline", raw)
    world.append("bosa", raw)
    wait_for(lambda: world.answers(), what="the answer")
    wait_for(lambda: world.count(Message, Message.status == "processed") >= 2, what="the copies")  # + the bot's own answer
    world.wait_settled()
    assert [purpose(e) for e in world.answers()] == ["form_complete"]
    answer = email.message_from_bytes(world.answers()[0].data)
    assert answer["Auto-Submitted"] == "auto-replied" and answer["In-Reply-To"] == "<form1@sambreville.be>"
    client = imap_connect(*world.users["worldline"])
    client.select_folder("INBOX")
    flags = client.get_flags(client.search(["ALL"]))
    assert all(b"$MailbotDone" in f and b"\\Seen" not in f for f in flags.values())
    client.select_folder("Sent")
    assert len(client.search(["HEADER", "Message-ID", answer["Message-ID"].strip("<>")])) == 1


def test_staff_reply_in_the_sent_folder_stops_the_clock(world):
    world.start()
    world.append("worldline", form_mail(1).to_bytes())
    wait_for(lambda: world.answers(), what="the answer")
    assert world.count(Deadline, Deadline.state == "open") == 1
    staff = Mail(brussels(2027, 3, 2, 10), WL, [CLIENT], "RE: [EPAY-2026-0001] BOSA M1036 - Bon de commande – E-guichet",
                 "Votre bon de commande est complet.", message_id="<staff1@worldline.localhost>",
                 in_reply_to="<form1@sambreville.be>")
    world.append("worldline", staff.to_bytes(), folder="Sent")
    wait_for(lambda: world.count(Deadline, Deadline.state == "met") == 1, what="the deadline to be met")


def test_dovecot_restarted_during_idle_nothing_missed(world, dovecot):
    world.start()
    dovecot.restart()
    world.append("worldline", form_mail(1).to_bytes())
    wait_for(lambda: world.answers(), timeout=30, what="the answer after the restart")
    assert [purpose(e) for e in world.answers()] == ["form_complete"]


def test_smtp_down_then_up_drains_the_outbox(world):
    world.start()
    world.smtp.stop()
    world.append("worldline", form_mail(1).to_bytes())
    world.append("worldline", form_mail(2, project="Piscine").to_bytes())
    wait_for(lambda: world.count(OutboxMail, OutboxMail.attempts >= 1) >= 1, what="a failed send")
    world.smtp.start()
    wait_for(lambda: len(world.answers()) == 2, timeout=30, what="both answers")
    world.wait_settled()
    assert len(world.answers()) == 2
    assert world.count(OutboxMail, OutboxMail.state == "sent", OutboxMail.purpose == "form_complete") == 2


def test_smtp_refusal_4xx_is_retried_5xx_is_not(world):
    world.start()
    world.smtp.fail_next(1, code=451)
    world.append("worldline", form_mail(1).to_bytes())
    wait_for(lambda: world.answers() and world.answers()[-1].accepted, timeout=20, what="the retried answer")
    world.smtp.fail_next(1, code=554)
    world.append("worldline", form_mail(2, project="Piscine").to_bytes())
    wait_for(lambda: world.count(OutboxMail, OutboxMail.state == "failed") == 1, what="the refused answer")
    with world.session() as s:
        failed = s.exec(select(OutboxMail).where(OutboxMail.state == "failed")).one()
    assert failed.last_error.startswith("554")


def test_sigterm_mid_batch_then_restart_finishes_it(world, tmp_path):
    config = tmp_path / "bot.toml"
    config.write_text(to_toml(world.data))
    for n in range(20):  # twenty clients (one address gets at most 10 answers a day)
        world.append("worldline", form_mail(n, project=f"Projet {n}", sender=f"client{n}@sambreville.be").to_bytes())
    env = dict(os.environ)

    def start():
        return subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    proc = start()
    wait_for(lambda: world.count(Message, Message.status == "processed") >= 3, timeout=30, what="a few mails")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read()[-2000:]
    done_first = world.count(Message, Message.status == "processed")
    assert done_first < 20 + 20  # stopped before the end of the batch (mails and the bot's own copies)
    proc = start()
    try:
        wait_for(lambda: len(world.answers(to="sambreville.be")) == 20, timeout=60, what="every answer")
        world.wait_settled()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    ids = [email.message_from_bytes(e.data)["In-Reply-To"] for e in world.answers(to="sambreville.be")]
    assert sorted(ids) == sorted(f"<form{n}@sambreville.be>" for n in range(20))


def run_season() -> list[str]:
    from mailbot.demo import Demo
    from mailbot.transport.sandbox import dovecot_available

    if not dovecot_available():
        pytest.skip("Dovecot is not installed")
    lines = []
    # Not pytest's tmp_path: as root Dovecot runs as nobody, who cannot enter /tmp/pytest-of-root.
    with tempfile.TemporaryDirectory(prefix="mailbot-season-") as folder:
        assert Demo(Path(folder), out=lines.append).run() == 0
    return lines


def test_a_season_of_mail_runs_against_dovecot():
    """`mailbot demo`: the season through its own sandbox; every mail understood, deadlines kept."""
    lines = run_season()
    text = "\n".join(lines)
    assert text.count("understood:") == 13
    assert "(the bot did not finish" not in text
    assert text.count("bot sent: escalation") == 2 and "bot sent: signed_received" in text
    assert "EPAY-2027-0001 'E-guichet Stadsloket': access_sent" in text
    # Each staff alert names its dossier: no two alike.
    alerts = [line for line in lines if re.search(r"bot sent: (warning|escalation)", line)]
    assert len(alerts) == 5 and len(set(alerts)) == 5, alerts
    assert all(re.search(r" for EPAY-2027-000\d ", line) for line in alerts), alerts
    # The SMTP server's count is explained: the season's own mails, answers, staff notes, digests.
    took = re.search(r"The sandbox's SMTP server took (\d+) mails: the season's (\d+) mails, (\d+) to clients "
                     r"\(answers and reminders\), (\d+) notes to staff \(warnings, escalations, a person needed\) and "
                     r"(\d+) daily digests", text)
    assert took, lines[-3:]
    total, season, clients, staff, digests = map(int, took.groups())
    assert season == 13 and total == season + clients + staff + digests
    to_clients = [line for line in lines if "bot sent:" in line and not re.search(r"to \S+@(worldline|bosa)\.localhost", line)]
    assert clients == len(to_clients) and staff == text.count("bot sent:") - len(to_clients) and digests > 0


@pytest.mark.slow
def test_the_season_is_narrated_the_same_from_run_to_run():
    first, second = run_season(), run_season()
    assert first == second, "\n".join(difflib.unified_diff(first, second, lineterm=""))
