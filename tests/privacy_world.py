"""A season of mail and one client writing from a non-ASCII address, replayed by `mailbot replay`
into a SQLite file: the database the retention and erasure tests work on (import it as
`privacy_world`: pytest puts tests/ on the path). A fresh copy per test: `db`."""

import email.policy
import email.utils
import json
import shutil
import sqlite3
import subprocess
import sys
import unicodedata
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlmodel import Session

from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, brussels, season
from mailbot.store.db import open_database
from mailbot.transport.stamp import stamp

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = load_settings(SANDBOX_CONFIG)
# Zoë writes from a Mac (NFD) in mixed case; the form names her the same way; the bot stores
# her address NFC lower-case in contacts, NFD JSON-escaped in the outbox.
ZOE_NFD = "Zoe\u0308.Dupre\u0301@Exämple-Gemeente.be"
ZOE = "zoë.dupré@exämple-gemeente.be"
# What the season's clients left in the database: none of it may survive a purge.
PERSONAL = ["marie.dubois@sambreville.be", "an.janssens@lier.be", "claire.martin@ville.namur.be",
            "jean.inconnu@gmail.com", "it-support@sambreville.be", "webteam@lier.be", "Marie Dubois",
            "Koen Peeters", "Jean Lambert", "BE71 0961 2345 6769", "+32475123456", "IMG_2041.jpg",
            "Bestelbon_WL_M1036_NL_V2.2 v2.xlsx", "Bon de commande Namur.pdf", "Automatisch antwoord: BOSA M1036",
            "Convention d'utilisation ePayment – Ville de Sambreville", ZOE]


def zoe_mail() -> bytes:
    form = fill_form("fr", complete_values(
        "fr", project_name="Piscine communale", legal_name="Commune d'Exämple", business_contact_name="Zoë Dupré",
        business_contact_email=ZOE_NFD, business_contact_phone="02 511 22 33", technical_contact_name="Luc Martens",
        technical_contact_phone="02 511 22 34", technical_contact_email="informatique@exämple-gemeente.be",
        billing_email="finances@exämple-gemeente.be"), rules=load_rules())
    msg = EmailMessage(policy=email.policy.SMTPUTF8)  # a UTF-8 address in From (RFC 6532)
    msg["From"] = f"Zoë Dupré <{ZOE_NFD}>"
    msg["To"] = SETTINGS.mailboxes["worldline"].address
    msg["Cc"] = SETTINGS.mailboxes["bosa"].address
    msg["Subject"] = "BOSA M1036 - Bon de commande – Piscine communale"
    msg["Date"] = email.utils.format_datetime(brussels(2027, 1, 12, 9))
    msg["Message-ID"] = "<zoe-1@mail.example.net>"
    msg.set_content("Bonjour, voici notre bon de commande.\n\nZoë Dupré")
    msg.add_attachment(form, maintype="application", subtype=XLSX.split("/")[1], filename="Bon de commande.xlsx")
    return stamp(msg.as_bytes(), ZOE_NFD)  # as the sandbox's SMTP server delivers it


@pytest.fixture(scope="module")
def season_db(tmp_path_factory):
    """A season of mail and Zoë's form, replayed by `mailbot replay` into a SQLite file; its
    answers then marked sent, as the outbox sender does once the SMTP server takes them (the
    replay sends nothing)."""
    tmp = tmp_path_factory.mktemp("privacy")
    folder = tmp / "mail"
    folder.mkdir()
    for i, mail in enumerate(season(SETTINGS)):
        (folder / f"{i:03d}.eml").write_bytes(mail.delivered())
    (folder / "100-zoe.eml").write_bytes(zoe_mail())
    path = tmp / "season.sqlite"
    assert main(["replay", str(folder), "--db", f"sqlite:///{path}", "--until", "2027-02-05T18:00"]) == 0
    sql(path, "UPDATE outbox SET state = 'sent', sent_at = created_at")
    return path


def sql(path, statement: str) -> list[tuple]:
    """One statement, committed, and the connection closed (its WAL folded into the file)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(statement).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db(season_db, tmp_path):
    path = tmp_path / "db.sqlite"
    shutil.copy(season_db, path)
    return path


def texts(path) -> list[str]:
    """Every text stored in the database, JSON decoded, NFC and lower-cased."""
    out = []
    for (table,) in sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in sql(path, f'SELECT * FROM "{table}"'):
            for cell in row:
                if isinstance(cell, str):
                    out.append(cell)
                    if cell[:1] in "[{":
                        try:
                            out.append(json.dumps(json.loads(cell), ensure_ascii=False))
                        except ValueError:
                            pass
    return [unicodedata.normalize("NFC", t).lower() for t in out]


def found(path, words) -> list[str]:
    stored = "\n".join(texts(path))
    return [w for w in words if unicodedata.normalize("NFC", w).lower() in stored]


def mailbot(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailbot", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def session_on(path) -> Session:
    return Session(open_database(f"sqlite:///{path}"))
