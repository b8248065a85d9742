"""Without --config every command uses the sandbox's configuration and the sandbox's database,
the one `mailbot run` writes; the commands that read it never create an empty one."""

import json
from pathlib import Path

import pytest

from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.transport.local import default_folder, default_settings, sandbox_database, sandbox_for

WL, BOSA = "ecom-belgium@worldline.localhost", "epayment@bosa.localhost"


@pytest.fixture
def state(tmp_path, monkeypatch):
    """The sandbox's default folder under tmp_path, and a working directory elsewhere."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "state" / "mailbot" / "sandbox"


def test_the_default_folder_for_root_is_outside_its_home(monkeypatch, tmp_path):
    """Root's home is closed to the user the sandbox's Dovecot runs as: /var/lib/mailbot/sandbox,
    unless XDG_STATE_HOME says otherwise; anyone else keeps theirs in ~/.local/state."""
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert default_folder() == Path("/var/lib/mailbot/sandbox")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_folder() == tmp_path / "state" / "mailbot" / "sandbox"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_folder() == tmp_path / ".local" / "state" / "mailbot" / "sandbox"


def test_run_and_the_other_commands_name_the_same_database(state):
    assert default_folder() == state
    sandbox, _ = sandbox_for()  # what `mailbot run` without --config starts (not started here)
    assert default_settings().database.url == sandbox_database(sandbox.folder) == f"sqlite:///{state / 'mailbot.sqlite'}"


def test_status_digest_and_mark_without_config_read_the_sandboxs_database(state, capsys):
    """They disagreed: status read the sandbox's database, digest and mark data/mailbot.sqlite,
    so a new user saw an empty digest and "no dossier EPAY-...". """
    url = sandbox_database(state)
    ctx = Context.load(load_settings(SANDBOX_CONFIG), open_database(url), max_attempts=1)
    form = fill_form("fr", complete_values("fr", project_name="Piscine de Huy"), rules=load_rules())
    mail = Mail(brussels(2027, 3, 1, 9), "Marie Dubois <marie.dubois@sambreville.be>", [WL], "BOSA M1036 - Bon de commande",
                "Bonjour, ci-joint notre bon de commande.", cc=[BOSA], attachments=[("bdc.xlsx", form, XLSX)],
                message_id="<dd1@sambreville.be>")
    assert handle(mail.delivered(), Seen("worldline"), brussels(2027, 3, 1, 9), ctx).dossier == "EPAY-2027-0001"
    ctx.engine.dispose()

    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outbox"] == {"pending": 1}  # the answer to that mail
    assert main(["digest", "--at", "2027-03-02T08:30"]) == 0
    assert "EPAY-2027-0001" in capsys.readouterr().out
    assert main(["mark", "EPAY-2027-0001", "prevalidated", "--by", "morad"]) == 0
    assert "EPAY-2027-0001: prevalidated, marked by morad" in capsys.readouterr().out
    assert not (Path.cwd() / "data").exists()


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["digest"], ["mark", "EPAY-2027-0001", "prevalidated"]])
def test_a_command_that_reads_says_there_is_no_database_yet_and_creates_none(state, capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no database yet at {state / 'mailbot.sqlite'}" in err and "mailbot run" in err
    assert not state.exists() and not (Path.cwd() / "data").exists()


def test_with_a_configuration_too(tmp_path, monkeypatch, capsys):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "mailbot.toml").write_text(SANDBOX_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--config", str(etc / "mailbot.toml")]) == 2
    err = capsys.readouterr().err
    assert f"no database yet at {etc / 'data' / 'mailbot.sqlite'}" in err and "mailbot run --config FILE" in err
    assert not (etc / "data").exists()
