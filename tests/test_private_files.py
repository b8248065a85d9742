"""Personal data on disk: the database file, its WAL and the folders the bot creates are
private whatever the umask; a secret file others may read is refused in one sentence."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from mailbot.config import Secret, read_secret_file
from mailbot.errors import ConfigError
from mailbot.private_files import private_dir
from mailbot.season import brussels
from mailbot.store.db import open_database
from mailbot.store.models import Dossier

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_database_file_its_wal_and_new_folders_are_private_whatever_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        engine = open_database(f"sqlite:///{tmp_path}/new/data/mailbot.sqlite")
        with Session(engine) as session:  # a write: the -wal and -shm files exist while it is open
            session.add(Dossier(reference="EPAY-2027-0001", project_name="p", project_key="p",
                                opened_at=brussels(2027, 1, 1), updated_at=brussels(2027, 1, 1)))
            session.commit()
            db = tmp_path / "new" / "data" / "mailbot.sqlite"
            modes = {p.name: stat.S_IMODE(os.stat(p).st_mode)
                     for p in (db, db.with_name("mailbot.sqlite-wal"), db.with_name("mailbot.sqlite-shm"))}
        engine.dispose()
    finally:
        os.umask(old)
    assert modes == {"mailbot.sqlite": 0o600, "mailbot.sqlite-wal": 0o600, "mailbot.sqlite-shm": 0o600}
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "new" / "data").st_mode) == 0o700


def test_a_database_left_world_readable_is_closed_to_others(tmp_path):
    path = tmp_path / "old.sqlite"
    open_database(f"sqlite:///{path}").dispose()
    os.chmod(path, 0o644)  # as an earlier version made it
    open_database(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_private_dir_leaves_existing_parents_alone(tmp_path):
    os.chmod(tmp_path, 0o755)
    old = os.umask(0)
    try:
        private_dir(tmp_path / "sandbox" / "dovecot")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "sandbox").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "sandbox" / "dovecot").st_mode) == 0o700


# --- secret files ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_file_others_may_read_is_refused_in_one_sentence(tmp_path, mode):
    path = tmp_path / "smtp-password"
    path.write_text("s3cret\n")
    os.chmod(path, mode)
    with pytest.raises(ConfigError) as err:
        Secret(password_file=path).password("smtp")
    message = str(err.value)
    assert str(path) in message and f"chmod 600 {path}" in message and "\n" not in message
    assert "s3cret" not in message


def test_a_private_secret_file_is_read(tmp_path):
    path = tmp_path / "imap-password"
    path.write_text("s3cret\nignored\n")
    os.chmod(path, 0o600)
    assert read_secret_file(path, "imap") == "s3cret"
    assert Secret(password_file=path).password("imap") == "s3cret"


@pytest.mark.integration
def test_mailbot_run_refuses_a_readable_password_file(tmp_path):
    secret = tmp_path / "imap-password"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    config = tmp_path / "bot.toml"
    config.write_text(f"""
[mailboxes.worldline]
address = "ecom-belgium@worldline.localhost"
[mailboxes.worldline.imap]
host = "127.0.0.1"
port = 1
user = "worldline"
security = "plain"
password_file = "{secret}"
[mailboxes.bosa]
address = "epayment@bosa.localhost"
[smtp]
host = "127.0.0.1"
port = 1
security = "plain"
[database]
url = "sqlite:///{tmp_path}/bot.sqlite"
""")
    done = subprocess.run([sys.executable, "-m", "mailbot", "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert f"secret file {secret} is open to other users" in done.stderr and f"chmod 600 {secret}" in done.stderr
