"""The staff page served by the daemon (`mailbot run --config` with [web] serve = true) and on
its own (`mailbot web --config`), each a process, against the session Dovecot and a LocalSmtp on
127.0.0.1; a staff member signs in (the demo sign-in) and acts over HTTP with httpx.

How a mail is quarantined for real here: staff's own template folder holds a form_complete text
with a typo (a name the template does not have: StrictUndefined fails the render), so the
pipeline fails the mail max_attempts times and sets it aside. Staff then fix the template, as they
would: the file is read again at the next render (the broken one never compiled, so nothing
stale is cached), and the same mail goes through on its second try, unchanged.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from imapclient import IMAPClient
from mailworld import (  # noqa: F401 - fixtures
    World,
    bot_log,
    local_smtp,
    to_toml,
    wait_for,
    world,
)
from sqlmodel import select
from test_faults import answer_counts, client_mail, header, mid, unfinished

from mailbot.resources import TEMPLATES
from mailbot.store.models import Event, Message, OutboxMail, Sighting, StaffAction
from mailbot.transport.sandbox import HOST, free_port

pytestmark = pytest.mark.integration  # the daemon and `mailbot web` run as processes

DEMO = "demo.staff@worldline.localhost"  # [web] demo_user's default
WEB = {"serve": True, "port": 0, "sign_in": "demo", "staff": {"worldline": [DEMO]}}
MARKER = "-- corrigé par l'équipe ePayment"  # the fixed staff template's own last line


class Bot:
    """`python -m mailbot run --config FILE` in a subprocess, its log in a file."""

    def __init__(self, world: World, tmp_path: Path) -> None:
        self.world, self.config, self.log = world, tmp_path / "bot.toml", tmp_path / "bot.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Bot:
        self.config.write_text(to_toml(self.world.data))
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mailbot", "run", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ))
        return self

    def wait_started(self) -> str:
        """The staff page's address, from the daemon's 'started' line."""
        assert self.proc is not None
        wait_for(lambda: "'started'" in self.log.read_text() or self.proc.poll() is not None, 30, "the daemon to start")
        assert self.proc.poll() is None, self.tail()
        found = re.search(r"'started' .*web='(http://[^']+)/'", self.log.read_text())
        assert found, self.tail()
        return found.group(1)

    def wait_for(self, predicate, timeout=30.0, what="condition"):
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the daemon's log ends:\n{self.tail()}") from None

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(30) == 0, self.tail()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def bot(world, tmp_path):
    b = Bot(world, tmp_path)
    yield b
    if b.proc is not None and b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait(10)


# --- the staff page, as a browser uses it ----------------------------------------------------------

def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def signed_in(base: str) -> httpx.Client:
    """A browser signed in as the demo staff member (GET /signin for the form's token, then POST)."""
    browser = httpx.Client(base_url=base, timeout=10)
    form = browser.get("/signin")
    assert form.status_code == 200, form.text
    done = browser.post("/signin/demo", data={"csrf": csrf(form.text), "next": "/queues"})
    assert (done.status_code, done.headers["location"]) == (303, "/queues"), done.text
    return browser


def act(browser: httpx.Client, path: str) -> str:
    """Press the button of `path` on the queues page, as shown there; the page after it."""
    page = browser.get("/queues")
    assert page.status_code == 200 and f'action="{path}"' in page.text, page.text
    done = browser.post(path, data={"csrf": csrf(page.text), "back": "/queues"})
    assert (done.status_code, done.headers["location"]) == (303, "/queues"), done.text
    return browser.get("/queues").text


# --- a staff template with a typo, and its fix --------------------------------------------------------

SHIPPED = TEMPLATES.joinpath("form_complete.fr.txt").read_text(encoding="utf-8")


def broken_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "form_complete.fr.txt").write_text(SHIPPED + "{{ signature_typo }}\n", encoding="utf-8")
    return folder


def fix_templates(folder: Path) -> None:
    (folder / "form_complete.fr.txt").write_text(SHIPPED.rstrip("\n") + f"\n{MARKER}\n", encoding="utf-8")


def the_mail(world: World, message_id: str) -> Message:
    with world.session() as s:
        return s.exec(select(Message).where(Message.message_id == message_id.strip("<>"))).one()


def quarantined_mail(world: World, bot: Bot, message_id: str) -> Message:
    bot.wait_for(lambda: world.count(Message, Message.message_id == message_id.strip("<>"),
                                     Message.status == "quarantined"), what="the mail to be quarantined")
    msg = the_mail(world, message_id)
    assert msg.attempts == 3 and "form_complete.fr" in msg.status_reason and "signature_typo" in msg.status_reason
    assert answer_counts(world) == {}
    return msg


def gone_idle(world: World) -> None:
    """The bot has nothing left to do, and its watchers have had the time to end their round and
    go idle (Dovecot tells of a change after 500 ms): what they do next, a nudge made them do."""
    world.wait_settled()
    time.sleep(1.5)


def staff_actions(world: World) -> list[StaffAction]:
    with world.session() as s:
        return list(s.exec(select(StaffAction).order_by(StaffAction.id)))


# --- 1. a quarantined mail released on the page ------------------------------------------------------

def test_released_mail_is_processed_again_at_once(world, bot, tmp_path):
    templates = broken_templates(tmp_path)
    world.configure(web=WEB, files={"templates": str(templates)})  # idle_minutes: the default 25
    base = bot.start().wait_started()
    world.append("worldline", client_mail(1, form=True))
    msg = quarantined_mail(world, bot, mid(1))
    fix_templates(templates)
    gone_idle(world)
    browser = signed_in(base)
    page = act(browser, f"/mail/{msg.id}/release")
    assert "released" in page
    # The nudge: the INBOX watcher takes it at once, not at the end of its 25-minute IDLE.
    bot.wait_for(lambda: answer_counts(world) == {mid(1): 1} and unfinished(world) == 0, timeout=10,
                 what="the released mail processed and answered")
    world.wait_settled()
    after = the_mail(world, mid(1))
    assert (after.status, after.dossier_id is not None) == ("processed", True), after
    with world.session() as s:
        answer = s.exec(select(OutboxMail).where(OutboxMail.in_reply_to == mid(1).strip("<>"))).one()
        events = list(s.exec(select(Event).where(Event.message_pk == msg.id, Event.kind == "mail_released")))
    assert (answer.purpose, answer.state) == ("form_complete", "sent")
    [sent] = [e for e in world.smtp.envelopes if e.accepted and header(e, "In-Reply-To") == mid(1)]
    assert header(sent, "Message-ID") == f"<{answer.message_id}>"
    assert MARKER in _text(sent.data)  # written with the fixed template
    [action] = staff_actions(world)
    assert (action.who, action.action, action.message_pk) == (DEMO, "released", msg.id)
    assert "signature_typo" in action.detail  # why it was in the quarantine
    # The mail had no dossier when it was released (its failed tries were rolled back): the
    # release is the staff action's alone.
    assert events == []
    assert f"/mail/{msg.id}/release" not in browser.get("/queues").text
    browser.close()
    bot.stop()


def _text(data: bytes) -> str:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    return body.get_content() if body is not None else ""


def test_released_mail_gone_from_the_server_goes_back_to_the_quarantine(world, bot, tmp_path):
    templates = broken_templates(tmp_path)
    world.configure(web=WEB, files={"templates": str(templates)})
    base = bot.start().wait_started()
    world.append("worldline", client_mail(1, form=True))
    msg = quarantined_mail(world, bot, mid(1))
    fix_templates(templates)
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users["worldline"])
        client.select_folder("INBOX")
        client.delete_messages(client.search(["ALL"]))  # a person deleted it in their mail program
        client.expunge()
    gone_idle(world)
    browser = signed_in(base)
    assert msg.subject in browser.get("/attention").text
    act(browser, f"/mail/{msg.id}/release")
    bot.wait_for(lambda: the_mail(world, mid(1)).status == "quarantined", timeout=10,
                 what="the mail back in the quarantine")
    again = the_mail(world, mid(1))
    assert again.status_reason == "taken again, but no longer in worldline INBOX on the server"
    # Shown to staff again: in the quarantine, not to be released again (no watched folder has it
    # now), and with the mail that needs a person.
    queues = browser.get("/queues").text
    assert again.subject in queues and f"/mail/{msg.id}/release" not in queues
    assert "ne peut pas être repris" in queues
    assert again.subject in browser.get("/attention").text
    # The loop goes on: the next mail is taken and answered.
    world.append("worldline", client_mail(2, form=True))
    bot.wait_for(lambda: answer_counts(world) == {mid(2): 1}, timeout=20, what="the next mail answered")
    world.wait_settled()
    assert the_mail(world, mid(1)).status == "quarantined"
    assert [(a.who, a.action, a.message_pk) for a in staff_actions(world)] == [(DEMO, "released", msg.id)]
    browser.close()
    bot.stop()


# --- 2. a refused answer sent again --------------------------------------------------------------------

def test_refused_answer_sent_again_is_delivered_once(world, bot):
    world.configure(web=WEB)
    base = bot.start().wait_started()
    world.smtp.fail_next(1, code=554)
    world.append("worldline", client_mail(1, form=True))
    bot.wait_for(lambda: world.count(OutboxMail, OutboxMail.state == "failed") == 1, what="the refused answer")
    with world.session() as s:
        failed = s.exec(select(OutboxMail).where(OutboxMail.state == "failed")).one()
    assert failed.last_error.startswith("554") and answer_counts(world) == {}
    gone_idle(world)
    browser = signed_in(base)
    page = act(browser, f"/outbox/{failed.id}/send-again")
    assert "sent again" in page
    bot.wait_for(lambda: answer_counts(world) == {mid(1): 1} and unfinished(world) == 0, timeout=10,
                 what="the answer sent again")
    world.wait_settled()
    to_client = [e for e in world.smtp.envelopes if header(e, "In-Reply-To") == mid(1)]
    assert [(e.accepted, header(e, "Message-ID")) for e in to_client] == [
        (False, f"<{failed.message_id}>"), (True, f"<{failed.message_id}>")]
    with world.session() as s:
        row = s.get(OutboxMail, failed.id)
        events = list(s.exec(select(Event).where(Event.kind == "answer_sent_again")))
    assert (row.state, row.message_id) == ("sent", failed.message_id)
    [action] = staff_actions(world)
    assert (action.who, action.action, action.outbox_id) == (DEMO, "sent_again", failed.id)
    assert action.detail.startswith("554")
    [event] = events
    assert event.dossier_id == row.dossier_id and DEMO in event.detail
    # Pressed again (a second tab): refused, nothing sent.
    again = browser.post(f"/outbox/{failed.id}/send-again", data={"csrf": csrf(browser.get("/queues").text),
                                                                   "back": "/queues"})
    assert again.status_code == 303 and "not failed" in browser.get("/queues").text
    time.sleep(1.5)
    assert answer_counts(world) == {mid(1): 1} and len(staff_actions(world)) == 1
    browser.close()
    bot.stop()


# --- 3. `mailbot web` on its own, and a port already taken ---------------------------------------------

def mailbot(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailbot", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ), **kwargs)


def finished(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@contextlib.contextmanager
def listening() -> socket.socket:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock


def write_config(world: World, tmp_path: Path, name: str, **web) -> Path:
    data = dict(world.data, web={**WEB, "serve": False, **web})
    path = tmp_path / name
    path.write_text(to_toml(data))
    return path


def test_mailbot_web_serves_and_stops_on_sigterm(world, tmp_path):
    port = free_port()
    config = write_config(world, tmp_path, "web.toml", port=port)
    proc = mailbot("web", "--config", str(config))
    try:
        def answering():
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"http://{HOST}:{port}/", timeout=2)
            assert proc.poll() is None, finished(proc)
            return None

        first = wait_for(answering, 30, "mailbot web to answer")
        assert (first.status_code, first.headers["location"]) == (303, "/signin?next=/")
        browser = signed_in(f"http://{HOST}:{port}")
        assert browser.get("/").status_code == 200  # the dossiers: an empty list
        # A second one on the same port: said at once, in one line.
        code, out, err = finished(mailbot("web", "--config", str(config)))
        assert (code, out) == (2, "")
        assert err == f"mailbot: web: cannot listen on {HOST}:{port}: Address already in use\n"
        proc.send_signal(signal.SIGTERM)  # the browser's connection still open
        code, out, err = finished(proc, 20)
        browser.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert out == f"mailbot web: the staff page on http://{HOST}:{port}/ (Ctrl-C to stop)\n"


def test_mailbot_web_on_a_taken_port_or_without_a_database_says_so(world, tmp_path):
    with listening() as taken:
        port = taken.getsockname()[1]
        config = write_config(world, tmp_path, "web.toml", port=port)
        code, out, err = finished(mailbot("web", "--config", str(config)))
    assert (code, out, err) == (2, "", f"mailbot: web: cannot listen on {HOST}:{port}: Address already in use\n")
    missing = tmp_path / "nowhere.sqlite"
    world.data["database"]["url"] = f"sqlite:///{missing}"
    config = write_config(world, tmp_path, "nodb.toml", port=free_port())
    code, out, err = finished(mailbot("web", "--config", str(config)))
    assert (code, out) == (2, "")
    assert err.startswith(f"mailbot: no database yet at {missing}: nothing has been received there.")
    assert err.count("\n") == 1 and not missing.exists()


def test_mailbot_run_with_its_page_port_taken_does_not_start(world, tmp_path):
    with listening() as taken:
        port = taken.getsockname()[1]
        config = write_config(world, tmp_path, "run.toml", serve=True, port=port)
        code, out, err = finished(mailbot("run", "--config", str(config)), 20)
    assert (code, out, err) == (2, "", f"mailbot: web: cannot listen on {HOST}:{port}: Address already in use\n")


def archive(world: World, box: str) -> None:
    """A person moves every mail of the mailbox's INBOX to a folder the bot does not watch."""
    with IMAPClient(world.dovecot.host, port=world.dovecot.port, ssl=False, timeout=10) as client:
        client.login(*world.users[box])
        client.create_folder("Archive")
        client.select_folder("INBOX")
        client.move(client.search(["ALL"]), "Archive")


@pytest.mark.parametrize("archived", [("worldline",), ("worldline", "bosa")], ids=["from-one", "from-both"])
def test_released_mail_in_both_inboxes(world, bot, tmp_path, archived):
    """The client wrote to Worldline with BOSA in copy: the mail is in both inboxes. A person
    archived Worldline's copy before releasing it: BOSA's copy is taken, and answered once.
    Both copies archived: back in the quarantine, and no watcher keeps looking for it."""
    templates = broken_templates(tmp_path)
    world.configure(web=WEB, files={"templates": str(templates)})
    base = bot.start().wait_started()
    world.append("worldline", client_mail(1, form=True))
    msg = quarantined_mail(world, bot, mid(1))
    world.append("bosa", client_mail(1, form=True))
    bot.wait_for(lambda: world.count(Sighting, Sighting.message_pk == msg.id) == 2, what="BOSA's copy seen")
    fix_templates(templates)
    for box in archived:
        archive(world, box)
    gone_idle(world)
    browser = signed_in(base)
    act(browser, f"/mail/{msg.id}/release")
    if archived == ("worldline",):
        bot.wait_for(lambda: answer_counts(world) == {mid(1): 1} and unfinished(world) == 0, timeout=10,
                     what="the released mail taken from BOSA's inbox and answered")
        world.wait_settled()
        assert the_mail(world, mid(1)).status == "processed"
    else:
        bot.wait_for(lambda: the_mail(world, mid(1)).status == "quarantined", timeout=10,
                     what="the mail back in the quarantine")
        assert the_mail(world, mid(1)).status_reason.startswith("taken again, but no longer in ")
        queues = browser.get("/queues").text
        assert f"/mail/{msg.id}/release" not in queues and "ne peut pas être repris" in queues
        assert answer_counts(world) == {}
    browser.close()
    bot.stop()
