"""`pip install .` (not editable) brings the rules, templates and reference forms inside the
package, and the commands work from any working directory, away from the source tree.

The wheel is built from a copy of the sources with this environment's setuptools, offline, and
installed without dependencies into a fresh venv that borrows this environment's dependencies
(a .pth line added after the install, so this environment's editable mailbot stays out of it).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mailbot.season import season
from mailbot.transport.local import sandbox_for

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.integration]  # a wheel build and a venv: ~15 s


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # pip builds in the folder it is given: never in the worktree
    shutil.copytree(ROOT / "mailbot", src / "mailbot", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                  "--disable-pip-version-check", "-w", tmp / "wheels", src])
    assert built.returncode == 0, built.stderr
    wheel = next((tmp / "wheels").glob("mailbot-*.whl"))
    venv = tmp / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    python = venv / "bin" / "python"
    done = _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
                 "--disable-pip-version-check", wheel])
    assert done.returncode == 0, done.stderr
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    elsewhere = tmp / "elsewhere"  # the working directory: no rules/, templates/ or data/ here
    elsewhere.mkdir()
    env = {**os.environ, "HOME": str(tmp / "home"), "XDG_STATE_HOME": str(tmp / "state")}
    env.pop("PYTHONPATH", None)
    return wheel, venv, Path(site), elsewhere, env


def test_the_wheel_carries_the_rules_templates_and_reference_forms(installed):
    wheel, *_ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("rules/order_form.toml", "rules/subjects.toml", "rules/documents.toml", "rules/robots.toml",
                 "rules/calendars.toml", "rules/languages.toml", "templates/form_incomplete.fr.txt",
                 "templates/_layout.html", "reference/Bon de commande_WL_M1036_FR_V2.2.xlsx",
                 "reference/Bestelbon_WL_M1036_NL_V2.2.xlsx", "sandbox.toml",
                 "store/migrations/env.py", "store/migrations/versions/0001_initial_schema.py"):
        assert f"mailbot/{name}" in names, name


def test_the_installed_package_is_the_one_that_runs(installed):
    _, venv, site, elsewhere, env = installed
    where = _run([venv / "bin" / "python", "-c", "import mailbot; print(mailbot.__file__)"], cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).parent == site / "mailbot"


def test_check_form_on_a_reference_workbook_from_anywhere(installed):
    _, venv, site, elsewhere, env = installed
    form = site / "mailbot" / "reference" / "Bestelbon_WL_M1036_NL_V2.2.xlsx"
    done = _run([venv / "bin" / "mailbot", "check-form", "--json", form], cwd=elsewhere, env=env)
    assert done.returncode == 1, done.stderr  # the blank form: its fields are missing
    report = json.loads(done.stdout)
    assert (report["language"], report["version"]) == ("nl", "2.2")
    assert ["project_name", "missing"] in [[p["field"], p["code"]] for p in report["problems"]]
    samples = _run([venv / "bin" / "mailbot", "demo", "--forms"], cwd=elsewhere, env=env)
    assert samples.returncode == 0, samples.stderr
    assert "complete_FR.xlsx (FR, v2.2): complet" in samples.stdout


def test_replay_from_anywhere(installed, tmp_path):
    _, venv, _, elsewhere, env = installed
    _, data = sandbox_for(folder=tmp_path / "unused")
    from mailbot.config import parse_settings

    mails = season(parse_settings(data))[:4]
    paths = []
    for i, mail in enumerate(mails):
        paths.append(tmp_path / f"{i}.eml")
        paths[-1].write_bytes(mail.delivered())  # as exported from the sandbox's mailboxes: stamped
    done = _run([venv / "bin" / "mailbot", "replay", "--json", *paths], cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(e["event"] == "received" for e in events) == 4
    sent = [e for e in events if e["event"] == "sent"]
    assert sent and all(e["subject"] for e in sent)  # the templates were found and rendered
    assert {"form_complete", "form_incomplete"} <= {e["purpose"] for e in sent}  # the stamped senders are answered
    assert not list(elsewhere.iterdir())  # nothing written where it was started


def test_relative_paths_in_the_configuration_are_from_its_folder(installed, tmp_path):
    """The same configuration, started from another folder, finds its own rules file."""
    _, venv, site, elsewhere, env = installed
    etc = tmp_path / "etc"
    (etc / "rules").mkdir(parents=True)
    robots = (site / "mailbot" / "rules" / "robots.toml").read_text(encoding="utf-8")
    (etc / "rules" / "robots.toml").write_text(
        robots.replace('fr = ["réponse automatique",', 'fr = ["parti pêcher", "réponse automatique",'), encoding="utf-8")
    sandbox = (site / "mailbot" / "sandbox.toml").read_text(encoding="utf-8")
    (etc / "mailbot.toml").write_text(sandbox + '\n[files]\nrobot_rules = "rules/robots.toml"\n', encoding="utf-8")
    eml = tmp_path / "away.eml"
    eml.write_bytes(b"From: Luc Martin <luc.martin@ville.huy.be>\r\nTo: ecom-belgium@worldline.localhost\r\n"
                    b"Subject: =?utf-8?q?Parti_p=C3=AAcher_jusqu=27au_3_mai?=\r\n"
                    b"Date: Mon, 01 Mar 2027 10:00:00 +0100\r\nMessage-ID: <away@ville.huy.be>\r\n\r\nRetour le 3 mai.\r\n")
    done = _run([venv / "bin" / "mailbot", "replay", "--json", "--config", etc / "mailbot.toml", eml],
                cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    received = next(json.loads(line) for line in done.stdout.splitlines() if '"received"' in line)
    assert received["kind"] == "auto_reply"
