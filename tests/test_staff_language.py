"""Staff read their own language: each team's notes (a person needed, deadline warnings and
escalations, the watchdog) and the reasons in its digest are written in the `language` of its
mailbox; reasons are codes, rendered per language from rules/reasons.toml."""

import datetime as dt
import json
import string

import pytest
from sqlmodel import Session, select

from mailbot.answers.reasons import DEFAULT_REASONS, Reason, load_reasons
from mailbot.config import parse_settings
from mailbot.context import Context
from mailbot.errors import ConfigError, RulesError
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.jobs import run_digest, run_sweep
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import FolderState, OutboxMail
from mailbot.tomlfile import read_toml

WL = "ecom-belgium@worldline.localhost"
BOSA = "epayment@bosa.localhost"
CLIENT = "marie.dubois@sambreville.be"
AT = brussels(2027, 3, 1, 9)  # a Monday
# Words of each language's note that the others do not have
NEEDS_A_PERSON = {"en": "Needs a person", "fr": "À traiter par une personne", "nl": "Voor een medewerker"}
NO_DOSSIER = {"en": "a mail outside any dossier", "fr": "un mail hors de tout dossier",
              "nl": "een mail buiten elk dossier"}
ENGLISH = ("mailbot received a mail", "Please read it", "Hello,", "a mail outside any dossier", "deadline of ePayment")


def settings_with(worldline: str, bosa: str = "fr", **files):
    data = read_toml(SANDBOX_CONFIG, "configuration file", ConfigError)
    data["mailboxes"]["worldline"]["language"] = worldline
    data["mailboxes"]["bosa"]["language"] = bosa
    if files:
        data["files"] = files
    return parse_settings(data)


@pytest.fixture
def world(tmp_path):
    contexts = []

    def make(worldline: str, bosa: str = "fr") -> Context:
        ctx = Context.load(settings_with(worldline, bosa),
                           open_database(f"sqlite:///{tmp_path}/{worldline}-{bosa}.sqlite"), max_attempts=1)
        contexts.append(ctx)
        return ctx
    yield make
    for ctx in contexts:
        ctx.engine.dispose()


def outbox(ctx, purpose):
    with Session(ctx.engine) as s:
        return s.exec(select(OutboxMail).where(OutboxMail.purpose == purpose).order_by(OutboxMail.id)).all()


def stray_mail(at=AT):
    return Mail(at, "jean.inconnu@gmail.com", [WL], "Question sur vos services", "Bonjour, une question.",
                message_id="<stray@gmail.com>")


@pytest.mark.parametrize("language", ["en", "fr", "nl"])
def test_a_note_asking_for_a_person_is_in_the_teams_language(world, language):
    ctx = world(language)
    handle(stray_mail().delivered(), Seen("worldline"), AT, ctx)
    [note] = outbox(ctx, "needs_human")
    assert json.loads(note.recipients) == [WL] and note.language == language
    assert NEEDS_A_PERSON[language] in note.subject and "Question sur vos services" in note.subject
    assert NO_DOSSIER[language] in note.body_text and NO_DOSSIER[language] in note.body_html
    if language != "en":
        assert not [words for words in ENGLISH if words in note.body_text + note.body_html]
    # the audit trail keeps the code and the English text
    assert json.loads(note.detail)["reason"] == {"code": "no_dossier", "en": "a mail outside any dossier"}


def test_each_team_gets_its_own_language(world):
    ctx = world("nl", "fr")
    at = AT
    handle(stray_mail().delivered(), Seen("worldline"), at, ctx)
    bosa_stray = Mail(at, "paul.inconnu@gmail.com", [BOSA], "Une autre question", "Bonjour.", message_id="<s2@gmail.com>")
    handle(bosa_stray.delivered(), Seen("bosa"), at, ctx)
    notes = {json.loads(n.recipients)[0]: n for n in outbox(ctx, "needs_human")}
    assert (notes[WL].language, notes[BOSA].language) == ("nl", "fr")
    assert NO_DOSSIER["nl"] in notes[WL].body_text and NO_DOSSIER["fr"] in notes[BOSA].body_text


def form_mail():
    form = fill_form("fr", complete_values("fr"), rules=load_rules())
    return Mail(AT, CLIENT, [WL], "BOSA M1036 - Bon de commande – E-guichet", "Bonjour, ci-joint notre bon de commande.",
                cc=[BOSA], attachments=[("Bon de commande.xlsx", form, XLSX)], message_id="<f1@sambreville.be>")


@pytest.mark.parametrize("language, warning, escalation", [
    ("fr", "échéance", "en retard"),
    ("nl", "termijn", "te laat"),
])
def test_deadline_warnings_and_escalations_are_in_the_teams_language(world, language, warning, escalation):
    ctx = world(language)
    handle(form_mail().delivered(), Seen("worldline"), AT, ctx)  # prevalidation due Thursday 4 March
    run_sweep(ctx, brussels(2027, 3, 3, 9))
    run_sweep(ctx, brussels(2027, 3, 5, 9))
    [warn] = outbox(ctx, "warning")
    [late] = outbox(ctx, "escalation")
    assert (warn.language, late.language) == (language, language)
    assert warning in warn.body_text.lower() and escalation in late.body_text.lower()
    for note in (warn, late):
        assert not [words for words in ENGLISH if words in note.body_text + note.body_html], note.body_text
        assert "EPAY-2027-0001" in note.subject


@pytest.mark.parametrize("language, said", [
    ("fr", ["un mail hors de tout dossier", "une question d'un client dans le dossier"]),
    ("nl", ["een mail buiten elk dossier", "een vraag van een klant in het dossier"]),
    ("en", ["a mail outside any dossier", "a client's question in the dossier"]),
])
def test_the_digest_gives_its_reasons_in_the_teams_language(world, language, said):
    ctx = world(language)
    handle(form_mail().delivered(), Seen("worldline"), AT, ctx)
    question = Mail(AT + dt.timedelta(hours=2), CLIENT, [WL], "RE: [EPAY-2027-0001] question",
                    "Quel onglet faut-il remplir ?", message_id="<q1@sambreville.be>")
    handle(question.delivered(), Seen("worldline"), AT + dt.timedelta(hours=2), ctx)
    handle(stray_mail(AT + dt.timedelta(hours=3)).delivered(), Seen("worldline"), AT + dt.timedelta(hours=3), ctx)
    run_digest(ctx, brussels(2027, 3, 2, 8, 30))
    [digest] = [d for d in outbox(ctx, "digest") if json.loads(d.recipients) == [WL]]
    for words in said:
        assert words in digest.body_text and words in digest.body_html.replace("&#39;", "'")
    if language != "en":
        assert "outside any dossier" not in digest.body_text and "question in" not in digest.body_text


def test_the_watchdog_writes_in_the_teams_language(tmp_path, monkeypatch):
    from mailbot.daemon import Daemon

    monkeypatch.setenv("TEST_PW", "x")
    imap = {"host": "127.0.0.1", "port": 1, "user": "u", "security": "plain", "password_env": "TEST_PW"}
    settings = parse_settings({
        "mailboxes": {"worldline": {"address": WL, "imap": imap, "language": "fr"},
                      "bosa": {"address": BOSA, "imap": imap, "language": "nl"}},
        "smtp": {"host": "127.0.0.1", "port": 1, "security": "plain"},
        "database": {"url": f"sqlite:///{tmp_path}/w.sqlite"}, "daemon": {"watchdog_minutes": 10}})
    now = dt.datetime(2027, 3, 1, 9, tzinfo=dt.timezone.utc)
    daemon = Daemon(settings, clock=lambda: now + dt.timedelta(minutes=11))
    with Session(daemon.engine) as s:
        s.add(FolderState(mailbox="bosa", folder="INBOX", last_contact=now, last_error="ConnectionRefusedError"))
        s.add(FolderState(mailbox="worldline", folder="INBOX", last_contact=now, last_error="ConnectionRefusedError"))
        s.commit()
    daemon._watch(now, dt.timedelta(minutes=10))
    with Session(daemon.engine) as s:
        notes = {json.loads(o.detail)["mailbox"]: o for o in s.exec(select(OutboxMail))}
    assert (notes["worldline"].language, notes["bosa"].language) == ("fr", "nl")
    assert "ne répond plus" in notes["worldline"].subject and "antwoordt niet" in notes["bosa"].subject
    daemon.db.shutdown()
    daemon.engine.dispose()


# ------------------------------------------------------------------- the reasons file

def test_every_reason_has_each_language_with_the_same_placeholders():
    texts = load_reasons()
    fields = lambda text: {f for _, f, _, _ in string.Formatter().parse(text) if f}  # noqa: E731
    for code, by_language in texts.texts.items():
        assert set(by_language) == {"en", "fr", "nl"}, code
        assert fields(by_language["en"]) == fields(by_language["fr"]) == fields(by_language["nl"]), code
    assert texts.say(Reason("no_dossier"), "nl") == NO_DOSSIER["nl"]


def test_a_reason_is_rendered_with_its_parameters_and_never_fails():
    texts = load_reasons()
    said = texts.say(Reason("set_aside", {"detail": "ValueError: bad"}), "fr")
    assert "ValueError: bad" in said and said != texts.say(Reason("set_aside", {"detail": "ValueError: bad"}), "en")
    # a parameter the text does not name, or a text naming one the program does not give: no failure
    assert "{detail}" in texts.say(Reason("set_aside"), "fr")
    assert texts.say(Reason("no_such_code", {"x": "1"}), "fr") == "no_such_code (x: 1)"
    assert texts.say("a text written already", "nl") == "a text written already"


def test_a_staff_reasons_file_is_checked_when_loaded(tmp_path):
    shipped = DEFAULT_REASONS.read_text(encoding="utf-8")
    missing_nl = tmp_path / "missing.toml"
    missing_nl.write_text(shipped.replace('nl = "een mail buiten elk dossier"', ""), encoding="utf-8")
    with pytest.raises(RulesError, match=r"no_dossier.*nl"):
        load_reasons(missing_nl)
    odd = tmp_path / "odd.toml"
    odd.write_text(shipped.replace('nl = "een mail buiten elk dossier"', 'nl = "een mail buiten {dossier}"'),
                   encoding="utf-8")
    with pytest.raises(RulesError, match=r"no_dossier.*\{dossier\}"):
        load_reasons(odd)
    dropped = tmp_path / "dropped.toml"
    dropped.write_text(shipped.replace("[no_dossier]", "[no_dossier_renamed]"), encoding="utf-8")
    with pytest.raises(RulesError, match=r"no_dossier"):
        load_reasons(dropped)
    mine = tmp_path / "mine.toml"
    mine.write_text(shipped.replace('fr = "un mail hors de tout dossier"', 'fr = "un mail égaré"'), encoding="utf-8")
    assert load_reasons(mine).say(Reason("no_dossier"), "fr") == "un mail égaré"
    settings = settings_with("fr", reasons=str(mine))
    ctx = Context.load(settings, open_database(f"sqlite:///{tmp_path}/r.sqlite"), max_attempts=1)
    handle(stray_mail().delivered(), Seen("worldline"), AT, ctx)
    [note] = outbox(ctx, "needs_human")
    assert "un mail égaré" in note.body_text
    ctx.engine.dispose()


def test_a_mailbox_language_must_be_one_staff_texts_exist_for():
    with pytest.raises(ConfigError, match=r"mailboxes\.worldline\.language"):
        settings_with("de")


@pytest.mark.parametrize("subject", ["[mailbot] À traiter par une personne : =?utf-8?q?=C3=A9=C3=A",
                                     "[mailbot] needs a person: =?utf-8?q?=C3=A9=C3=A"])
def test_a_note_on_a_mail_with_an_undecoded_encoded_word_in_its_subject_composes(subject):
    """Found by the hostile corpus: a subject cut inside an encoded word the parser left as text
    made the composed mail fail to serialise (the stdlib decodes a literal "=?" again)."""
    import email
    import email.policy

    from mailbot.transport.compose import compose

    row = OutboxMail(purpose="needs_human", sender=WL, recipients=json.dumps([WL]), cc="[]", subject=subject,
                     body_text="x", body_html="<p>x</p>", language="fr", message_id="n1@worldline.localhost",
                     created_at=AT, detail="{}")
    sent = email.message_from_string(compose(row).as_string(policy=email.policy.SMTPUTF8))
    assert "=C3=A9" in str(sent["Subject"])
