"""The rules and templates ship inside the package; the configuration's [files] replaces them."""

import json
import shutil

from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.mail.robots import DEFAULT_ROBOT_RULES
from mailbot.resources import REFERENCE, RULES, SANDBOX_CONFIG, TEMPLATES
from mailbot.season import Mail, brussels
from mailbot.store.db import open_database

WL = "ecom-belgium@worldline.localhost"


def test_the_shipped_files_are_package_resources():
    assert {p.name for p in RULES.iterdir()} >= {"order_form.toml", "subjects.toml", "documents.toml",
                                                 "robots.toml", "calendars.toml", "languages.toml"}
    assert (TEMPLATES / "form_missing.fr.txt").is_file()
    assert (REFERENCE / "Bestelbon_WL_M1036_NL_V2.2.xlsx").is_file()
    assert "[mailboxes.worldline]" in SANDBOX_CONFIG.read_text(encoding="utf-8")
    assert load_rules().fields  # None: the shipped file


def _config(tmp_path, files: str) -> str:
    path = tmp_path / "mailbot.toml"
    path.write_text(SANDBOX_CONFIG.read_text(encoding="utf-8") + f"\n[files]\n{files}\n", encoding="utf-8")
    return str(path)


def _kind(capsys, argv) -> str:
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return next(e for e in lines if e["event"] == "received")["kind"]


def test_the_configured_robot_rules_are_the_ones_used(tmp_path, capsys):
    """files.robot_rules was accepted and ignored: an out-of-office phrase staff add is heard."""
    robots = tmp_path / "robots.toml"
    shipped = DEFAULT_ROBOT_RULES.read_text(encoding="utf-8")
    assert shipped.count('fr = ["réponse automatique",') == 1
    robots.write_text(shipped.replace('fr = ["réponse automatique",', 'fr = ["parti pêcher", "réponse automatique",'),
                      encoding="utf-8")
    eml = tmp_path / "mail" / "0.eml"
    eml.parent.mkdir()
    eml.write_bytes(Mail(brussels(2027, 3, 1), "Luc Martin <luc.martin@ville.huy.be>", [WL],
                         "Parti pêcher jusqu'au 3 mai", "Je reviens le 3 mai.", message_id="<f1@ville.huy.be>").to_bytes())
    shipped_kind = _kind(capsys, ["replay", str(eml), "--json", "--config", _config(tmp_path, "")])
    configured = _kind(capsys, ["replay", str(eml), "--json", "--config", _config(tmp_path, f'robot_rules = "{robots}"')])
    assert (shipped_kind, configured) == ("unrelated", "auto_reply")


def test_a_configured_template_replaces_the_shipped_one_of_its_name(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    shutil.copyfile(str(TEMPLATES / "needs_human.en.html"), folder / "needs_human.en.html")
    (folder / "needs_human.en.txt").write_text("Subject: A person please\n\nLook at {{ reason }}.\n", encoding="utf-8")
    settings = load_settings(_config(tmp_path, f'templates = "{folder}"'))
    ctx = Context.load(settings, open_database(f"sqlite:///{tmp_path}/t.sqlite"), max_attempts=1)
    context = {"dossier": None, "now": "2027-03-01 10:00", "reason": "this",
               "mail": {"subject": "s", "sender": "x@y.be", "mailboxes": ["worldline"], "kind": "unrelated",
                        "received": "2027-03-01 10:00"}}
    mine = ctx.renderer.render("needs_human", "en", context)
    assert (mine.subject, mine.text) == ("A person please", "Look at this.")
    # the templates not in the folder stay as shipped
    dossier = {"reference": "EPAY-2027-0001", "project_name": "Piscine", "organisation": "Ville de Huy"}
    assert ctx.renderer.render("form_missing", "fr", {"dossier": dossier, "now": "", "reason": "no_attachment",
                                                       "detail": ""}).subject.startswith("Bon de commande ePayment")
    ctx.engine.dispose()
