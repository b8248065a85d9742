"""The configuration: the example file is valid, and each mistake is one clear sentence."""

from pathlib import Path

import pytest

from mailbot.config import load_settings, parse_settings
from mailbot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

BOXES = {"worldline": {"address": "ecom@worldline.localhost"}, "bosa": {"address": "sm@bosa.localhost"}}


def test_example_and_sandbox_configs_load():
    example = load_settings(ROOT / "config.example.toml")
    assert example.mailboxes["worldline"].address == "ecom-belgium@worldline.com"
    assert example.deadlines.prevalidation.days == 3 and example.deadlines.encoding.days == 6
    assert example.files.calendars is None  # the calendars shipped in the package
    sandbox = load_settings(ROOT / "mailbot" / "sandbox.toml")
    assert all(box.address.endswith(".localhost") for box in sandbox.mailboxes.values())


@pytest.mark.parametrize("data, words", [
    ({"mailboxes": {"worldline": BOXES["worldline"]}}, "mailboxes the mailbox(es) bosa must be configured"),
    ({"mailboxes": BOXES, "colour": "blue"}, "colour is not a known key"),
    ({"mailboxes": {**BOXES, "bosa": {"address": "not an address"}}}, "mailboxes.bosa.address"),
    ({"mailboxes": BOXES, "deadlines": {"encoding": {"days": 0}}}, "deadlines.encoding.days"),
    ({"mailboxes": BOXES, "answers": {"from_mailbox": "gmail"}}, "answers.from_mailbox names no configured mailbox"),
    ({"mailboxes": {**BOXES, "bosa": {"adress": "x@y.be"}}}, "mailboxes.bosa.adress is not a known key"),
])
def test_mistakes_are_one_sentence(data, words):
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "my.toml")
    message = str(err.value)
    assert message.startswith("my.toml: ") and words in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_staff_addresses_name_their_mailbox():
    settings = parse_settings({"mailboxes": {**BOXES, "worldline": {"address": "Ecom@Worldline.localhost",
                                                                    "staff": ["Morad@Worldline.localhost"]}}})
    assert settings.mailbox_of("morad@worldline.localhost") == "worldline"
    assert settings.mailbox_of("ECOM@worldline.localhost") == "worldline"
    assert settings.mailbox_of("client@lier.be") is None


def test_relative_paths_are_taken_from_the_configuration_files_folder(tmp_path, monkeypatch):
    """As config.example.toml says: from the file's folder, wherever mailbot is started."""
    etc = tmp_path / "etc"
    etc.mkdir()
    boxes = ('[mailboxes.worldline]\naddress = "ecom@worldline.localhost"\n'
             '[mailboxes.worldline.imap]\nhost = "127.0.0.1"\nuser = "wl"\nsecurity = "plain"\npassword_file = "secrets/imap"\n'
             '[mailboxes.bosa]\naddress = "sm@bosa.localhost"\n')
    (etc / "full.toml").write_text(boxes + '[database]\nurl = "sqlite:///state/mb.sqlite"\n'
                                   '[files]\nrobot_rules = "rules/robots.toml"\ntemplates = "templates"\n'
                                   'calendars = "/srv/calendars.toml"\n', encoding="utf-8")
    (etc / "bare.toml").write_text(boxes, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    full = load_settings("etc/full.toml")  # a relative path to the file itself, too
    assert full.database.url == f"sqlite:///{etc / 'state' / 'mb.sqlite'}"
    assert (full.files.robot_rules, full.files.templates) == (etc / "rules" / "robots.toml", etc / "templates")
    assert full.files.calendars == Path("/srv/calendars.toml") and full.files.form_rules is None
    assert full.mailboxes["worldline"].imap.password_file == etc / "secrets" / "imap"
    # the default database is beside the configuration too, not in the working directory
    assert load_settings(etc / "bare.toml").database.url == f"sqlite:///{etc / 'data' / 'mailbot.sqlite'}"
    # settings built in code, with no file, keep their paths as given
    assert parse_settings({"mailboxes": BOXES, "files": {"robot_rules": "r.toml"}}).files.robot_rules == Path("r.toml")


def test_secret_files_take_the_services_credentials_directory_from_the_environment(tmp_path, monkeypatch):
    """deploy/mailbot.service: the secrets are files in $CREDENTIALS_DIRECTORY (LoadCredential=)."""
    secret = tmp_path / "mailbot-worldline-imap"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    boxes = {**BOXES, "worldline": {**BOXES["worldline"], "imap": {
        "host": "127.0.0.1", "user": "wl", "security": "plain",
        "password_file": "${CREDENTIALS_DIRECTORY}/mailbot-worldline-imap"}}}
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    imap = parse_settings({"mailboxes": boxes}, "/etc/mailbot/config.toml").mailboxes["worldline"].imap
    assert imap.password_file == secret and imap.password("imap") == "s3cret"
    # Outside the service the configuration loads all the same (status needs no secret); the
    # secret itself cannot be read, and the error says why.
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    imap = parse_settings({"mailboxes": boxes}, "/etc/mailbot/config.toml").mailboxes["worldline"].imap
    with pytest.raises(ConfigError, match=r"names \$CREDENTIALS_DIRECTORY, which is not set"):
        imap.password("mailboxes.worldline.imap")


@pytest.mark.parametrize("section, key, value, expected", [
    ("daemon", "max_attempts", "three", 'daemon.max_attempts should be a whole number, not "three"'),
    ("daemon", "readers", 1.5, "daemon.readers should be a whole number, not 1.5"),
    # every mail is read in a reader process: none at all is refused
    ("daemon", "readers", 0, "daemon.readers should be at least 1, not 0"),
    ("daemon", "read_memory_mb", 100, "daemon.read_memory_mb should be at least 256, not 100"),
    ("daemon", "idle_minutes", [1], "daemon.idle_minutes should be a number, not [1]"),
    ("answers", "shadow", "maybe", 'answers.shadow should be true or false, not "maybe"'),
    ("schedule", "digest_time", "8h30", 'schedule.digest_time should be a time of day such as "08:30", not "8h30"'),
    ("process", "reference_prefix", 42, "process.reference_prefix should be text in quotes, not 42"),
    ("deadlines", "encoding", {"days": 0}, "deadlines.encoding.days should be greater than 0, not 0"),
    ("smtp", "port", "abc", 'smtp.port should be a whole number, not "abc"'),
    ("smtp", "security", "ssl", 'smtp.security should be one of "tls", "starttls", "plain", not "ssl"'),
    ("answers", "from_mailbox", ["worldline"], 'answers.from_mailbox should be text in quotes, not ["worldline"]'),
    ("daemon", None, 3, "daemon should be a table ([daemon] and its keys), not 3"),
])
def test_a_wrong_type_says_what_was_given_and_what_is_expected(section, key, value, expected):
    data = {"mailboxes": BOXES, section: {key: value} if key else value}
    if section == "smtp":
        data[section] |= {"host": "127.0.0.1", "security": "plain"} if key != "security" else {"host": "mail.x.be"}
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "my.toml")
    assert str(err.value) == f"my.toml: {expected}"


def test_a_misspelt_section_names_the_closest_known_one(tmp_path):
    path = tmp_path / "mailbot.toml"
    path.write_text('[mailboxes.worldline]\naddress = "ecom@worldline.localhost"\n'
                    '[mailboxes.worldine.imap]\nhost = "127.0.0.1"\nuser = "ecom"\nsecurity = "plain"\n'
                    '[mailboxes.bosa]\naddress = "sm@bosa.localhost"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == f"{path}: [mailboxes.worldine] is not a known mailbox: did you mean [mailboxes.worldline]?"


@pytest.mark.parametrize("data, expected", [
    ({"mailboxes": BOXES, "answer": {"shadow": True}}, "[answer] is not a known section: did you mean [answers]?"),
    ({"mailboxes": {**BOXES, "bosa": {**BOXES["bosa"], "imapp": {"host": "h"}}}},
     "[mailboxes.bosa.imapp] is not a known section: did you mean [mailboxes.bosa.imap]?"),
    ({"mailboxes": BOXES, "daemon": {"max_attempt": 3}},
     "daemon.max_attempt is not a known key: did you mean daemon.max_attempts?"),
    ({"mailboxes": {"worldline": BOXES["worldline"], "bossa": BOXES["bosa"]}},
     "[mailboxes.bossa] is not a known mailbox: did you mean [mailboxes.bosa]?"),
    ({"mailboxes": BOXES, "colour": "blue"}, "colour is not a known key (see config.example.toml)"),
])
def test_a_misspelt_key_suggests_the_closest(data, expected):
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "my.toml")
    assert str(err.value) == f"my.toml: {expected}"
