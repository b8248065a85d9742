"""deploy/mailbot.service: systemd accepts it, and the daemon runs under its hardening."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mailworld import World, form_mail, purpose, to_toml, wait_for

pytestmark = pytest.mark.integration  # servers or processes in every test

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "mailbot.service"


@pytest.fixture
def world(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch):
    w = World(dovecot, make_imap_user, local_smtp, tmp_path, monkeypatch)
    yield w
    w.stop()


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return path


def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart at this installation's mailbot: systemd-analyze wants it to exist."""
    mailbot = Path(sys.executable).with_name("mailbot")
    if not mailbot.exists():
        pytest.skip(f"no mailbot command beside {sys.executable}")
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/mailbot/bin/mailbot run --config /etc/mailbot/config.toml" in text
    unit = tmp_path / "mailbot.service"
    unit.write_text(text.replace("/opt/mailbot/bin/mailbot", str(mailbot)), encoding="utf-8")
    return unit


def test_systemd_accepts_the_unit(tmp_path):
    done = subprocess.run([analyze(), "verify", "--man=no", str(unit_here(tmp_path))], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def test_the_unit_is_hardened(tmp_path):
    done = subprocess.run([analyze(), "security", "--offline=true", "--no-pager", str(unit_here(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    if "--offline" in done.stderr:
        pytest.skip("this systemd-analyze has no security --offline")
    level = re.search(r"Overall exposure level for mailbot\.service: ([\d.]+)", done.stdout)
    assert level, done.stdout[-2000:] + done.stderr
    # systemd rates 0-10 (10: unprotected); the unit gave 1.2 when written. Its remaining
    # exposure is the network, which the bot needs.
    assert float(level.group(1)) <= 2.0, done.stdout


# Runs mailbot as its console script would, after turning on what MemoryDenyWriteExecute=yes
# turns on (the kernel's PR_SET_MDWE, Linux 6.3+, kept across fork and exec: the reader process
# has it too), and after making sure it holds.
UNDER_MDWE = """
import ctypes, mmap, runpy, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit(78)
import msal, cryptography.hazmat.primitives.serialization  # OAuth2's libraries load too
sys.argv = ["mailbot", *sys.argv[1:]]
runpy.run_module("mailbot", run_name="__main__")
"""


def test_the_daemon_runs_with_memory_deny_write_execute(world, tmp_path):
    config = tmp_path / "bot.toml"
    config.write_text(to_toml(world.data))
    for n in (1, 2):  # two mails waiting: a batch, read ahead in the reader process
        world.append("worldline", form_mail(n, project=f"Projet {n}", sender=f"client{n}@sambreville.be").to_bytes())
    proc = subprocess.Popen([sys.executable, "-c", UNDER_MDWE, "run", "--config", str(config)], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is not None or len(world.answers(to="sambreville.be")) == 2, timeout=60,
                 what="the answers to the waiting mails")
        if proc.poll() == 77:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        world.append("worldline", form_mail(3, project="Projet 3", sender="client3@sambreville.be").to_bytes())
        wait_for(lambda: len(world.answers(to="sambreville.be")) == 3, what="the answer to a new mail")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read()[-3000:]
    assert [purpose(e) for e in world.answers(to="sambreville.be")] == ["form_complete"] * 3
