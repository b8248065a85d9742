"""Auto-responders that set no header (no Auto-Submitted, X-Autoreply or Precedence) and replies
to the bot's own answers: known by their text and their timing, never answered again, while a
client's reply with a question or a file is read and filed as before."""

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from mailbot.answers.digest import digest_context
from mailbot.answers.reasons import Reason
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.mail.robots import _plain, load_robot_rules
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Decision, Event, Message, OutboxMail

FORM_RULES = load_rules()

SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
CLIENT = "marie.dubois@sambreville.be"
AT = brussels(2027, 3, 1, 9)
SUBJECT = "BOSA M1036 - Bon de commande – E-guichet"
TEMPLATES = Path(__file__).resolve().parents[1] / "mailbot" / "templates"

OUT_OF_OFFICE = {
    "fr": "Bonjour,\n\nJe suis absent du bureau jusqu'au 15 mars inclus. En cas d'urgence, "
          "contactez le secrétariat au 071 26 02 00.\n\nMarie Dubois",
    "nl": "Goedendag,\n\nIk ben afwezig tot 15 maart. Voor dringende zaken: het secretariaat, "
          "071 26 02 00.\n\nMarie Dubois",
    "en": "Thank you for your message, we will answer shortly.\n\nThe Sambreville team",
    "de": "Guten Tag,\n\nich bin bis 15. März nicht im Büro. In dringenden Fällen wenden Sie sich an "
          "das Sekretariat.\n\nMarie Dubois",
}


@pytest.fixture
def ctx(tmp_path):
    return Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/r.sqlite"), max_attempts=1)


def feed(ctx, mail, at=None):
    """As the sandbox's SMTP server delivers it: stamped, the sender's own mail passes."""
    return handle(mail.delivered(), Seen("worldline"), at or mail.at, ctx)


def outbox(ctx):
    with Session(ctx.engine) as s:
        return s.exec(select(OutboxMail).order_by(OutboxMail.id)).all()


def reasons(ctx, message_id):
    with Session(ctx.engine) as s:
        return s.exec(select(Decision.reason).join(Message, Message.id == Decision.message_pk)
                      .where(Message.message_id == message_id)).all()


@pytest.fixture
def answered(ctx):
    """A client announces the order form without attaching it: the bot answers form_missing.
    Returns that answer (its Message-ID is what a reply names)."""
    feed(ctx, Mail(AT, CLIENT, [WL], SUBJECT, "Bonjour, voici notre demande.", cc=[BOSA], message_id="<first@x.be>"))
    [answer] = outbox(ctx)
    assert answer.purpose == "form_missing"
    return answer


def reply(answer, body, n=1, at=None, subject=None, attachments=(), headers=None):
    """A mail replying to the bot's answer, as a mail client (or an auto-responder) writes it."""
    return Mail(at or AT + dt.timedelta(seconds=5), CLIENT, [WL], subject or f"RE: {answer.subject}", body,
                message_id=f"<reply{n}@x.be>", in_reply_to=f"<{answer.message_id}>",
                attachments=list(attachments), headers=headers or {})


def quoted(answer):
    return "\n".join("> " + line for line in answer.body_text.splitlines())


# --- out-of-office and acknowledgements without headers ----------------------------------------

@pytest.mark.parametrize("language", sorted(OUT_OF_OFFICE))
def test_out_of_office_without_headers_is_an_auto_reply(ctx, answered, language):
    """RE: the bot's subject, a canned text, no Auto-Submitted: filed as an auto_reply, not answered."""
    outcome = feed(ctx, reply(answered, OUT_OF_OFFICE[language] + "\n\n" + quoted(answered)))
    assert (outcome.kind, outcome.dossier) == ("auto_reply", "EPAY-2027-0001")
    assert outcome.understanding.kind_reason.startswith("the text looks like an ")
    assert f"({language})" in outcome.understanding.kind_reason
    [reason] = reasons(ctx, "reply1@x.be")
    assert reason.startswith("auto_reply: the text looks like an ")
    assert [o.purpose for o in outbox(ctx)] == ["form_missing"]
    with Session(ctx.engine) as s:  # not a client's reply for staff to read
        assert not s.exec(select(Event).where(Event.kind == "reply_received")).all()
        digest = digest_context(s, "worldline", AT + dt.timedelta(hours=1), ctx.calendars["public"],
                                ctx.settings.process.zone)
    assert digest["needs_person"] == []


@pytest.mark.parametrize("subject", [
    "Absent: BOSA M1036 - Bon de commande – E-guichet", "Out of Office: BOSA M1036 - Bon de commande – E-guichet",
    "Automatisch antwoord: BOSA M1036 - Bon de commande – E-guichet",
    "Réponse automatique : BOSA M1036 - Bon de commande – E-guichet",
    "Abwesenheitsnotiz: BOSA M1036 - Bon de commande – E-guichet",
])
def test_out_of_office_subject_without_headers(ctx, subject):
    mail = Mail(AT, CLIENT, [WL], subject, "Back on Monday.", message_id="<ooo@x.be>")
    outcome = feed(ctx, mail)
    assert outcome.kind == "auto_reply" and outbox(ctx) == []


def test_an_absent_subject_with_the_form_attached_is_a_submission(ctx):
    """"Absent :" counts only on a mail with no attachment: with the form, a client's submission."""
    form = fill_form("fr", complete_values("fr", project_name="E-guichet"), rules=FORM_RULES)
    mail = Mail(AT, CLIENT, [WL], "Absent : bon de commande", "Bonjour, voici notre bon de commande.",
                cc=[BOSA], message_id="<absent@x.be>", attachments=[("Bon de commande.xlsx", form, XLSX)])
    outcome = feed(ctx, mail)
    assert outcome.kind == "submission"
    assert list(outcome.understanding.reading.kinds) == ["order_form"]
    assert not any(r.startswith("auto_reply:") for r in reasons(ctx, "absent@x.be"))


# --- replies to the bot's answers that bring nothing new ------------------------------------

def test_a_naive_auto_responder_with_an_unknown_text_is_not_answered_again(ctx, answered):
    """The bot's subject without RE:, a text no rule knows, seconds after the answer: it reads as
    the client's announcement again, but it replies to the bot's answer with nothing new."""
    mail = reply(answered, "Merci, votre courrier sera traité par nos services.", subject=SUBJECT)
    outcome = feed(ctx, mail)
    assert outcome.kind == "submission"  # filed as today
    assert reasons(ctx, "reply1@x.be") == [
        "loop: a reply to the bot's form_missing answer 5 s after it, with no attachment: a program's, not answered again"]
    assert [o.purpose for o in outbox(ctx)] == ["form_missing"]


def test_a_late_reply_without_attachment_or_request_is_not_answered_again(ctx, answered):
    """Two days on (no limit left to stop it), still nothing new: not answered."""
    later = AT + dt.timedelta(days=2)
    feed(ctx, reply(answered, "Bien reçu, merci.\n\n" + quoted(answered), at=later, subject=SUBJECT))
    assert reasons(ctx, "reply1@x.be") == [
        ("loop: a reply to the bot's form_missing answer (2 days after it) with no attachment and no new request: "
         "not answered again")]
    assert [o.purpose for o in outbox(ctx)] == ["form_missing"]


def test_a_reply_announcing_the_form_again_is_answered(ctx, answered):
    """New in what the client wrote: the form announced (and forgotten again)."""
    later = AT + dt.timedelta(days=2)
    feed(ctx, reply(answered, "Voici le bon de commande ci-joint.\n\n" + quoted(answered), at=later, subject=SUBJECT))
    assert [o.purpose for o in outbox(ctx)] == ["form_missing", "form_missing"]


# --- a real client must still be read -----------------------------------------------------------

def test_a_client_reply_quoting_the_answer_with_a_question_reaches_the_dossier(ctx, answered):
    body = "Bonjour,\n\nQuel onglet du fichier Excel faut-il remplir ?\n\nMarie Dubois\n\n" + quoted(answered)
    outcome = feed(ctx, reply(answered, body, at=AT + dt.timedelta(minutes=20)))
    assert (outcome.kind, outcome.dossier) == ("reply", "EPAY-2027-0001")
    assert reasons(ctx, "reply1@x.be") == ["a client's question in a dossier: a person answers"]
    with Session(ctx.engine) as s:
        events = s.exec(select(Event.kind).where(Event.message_pk == outcome.message_pk)).all()
        digest = digest_context(s, "worldline", AT + dt.timedelta(hours=1), ctx.calendars["public"],
                                ctx.settings.process.zone)
    assert events == ["reply_received"]
    assert [(m.reason, m.dossier) for m in digest["needs_person"]] == [(Reason("client_question"), "EPAY-2027-0001")]


def test_a_client_question_under_the_process_subject_is_still_answered(ctx, answered):
    later = AT + dt.timedelta(days=2)
    body = "Je suis absente demain : pouvez-vous m'envoyer le formulaire en néerlandais ?\n\n" + quoted(answered)
    outcome = feed(ctx, reply(answered, body, at=later, subject=SUBJECT))
    assert outcome.kind == "submission"
    assert not any(r.startswith(("loop:", "auto_reply:")) for r in reasons(ctx, "reply1@x.be"))
    assert [o.purpose for o in outbox(ctx)] == ["form_missing", "form_missing"]


def test_a_client_reply_with_the_form_and_an_absence_notice_is_read(ctx, answered):
    """A canned-looking text, seconds after the answer, but a file: a client's."""
    form = fill_form("fr", complete_values("fr", project_name="E-guichet"), rules=FORM_RULES)
    mail = reply(answered, "Je suis absente du bureau demain, voici le bon de commande.", subject=SUBJECT,
                 attachments=[("Bon de commande.xlsx", form, XLSX)])
    outcome = feed(ctx, mail)
    assert (outcome.kind, outcome.dossier) == ("submission", "EPAY-2027-0001")
    assert list(outcome.understanding.reading.kinds) == ["order_form"]
    assert [o.purpose for o in outbox(ctx)] == ["form_missing", "form_complete"]


def test_a_staff_acknowledgement_stays_staff(ctx, answered):
    """Worldline or BOSA staff replying with an acknowledgement-like text is staff's reply."""
    mail = Mail(AT + dt.timedelta(hours=1), BOSA, [WL], f"RE: {answered.subject}",
                "Votre demande a bien été enregistrée, nous vous répondrons dans les meilleurs délais.\n\n"
                + quoted(answered), message_id="<staff@x.be>", in_reply_to=f"<{answered.message_id}>")
    outcome = feed(ctx, mail)
    assert outcome.kind == "staff"
    assert not any(r.startswith("auto_reply:") for r in reasons(ctx, "staff@x.be"))


def test_a_client_naming_a_colleague_while_away_is_a_clients_reply(ctx, answered):
    body = "Je suis absente jusqu'au 20/3, ma collègue x@commune.be reprend le dossier.\n\n" + quoted(answered)
    outcome = feed(ctx, reply(answered, body, at=AT + dt.timedelta(hours=1)))
    assert (outcome.kind, outcome.dossier) == ("reply", "EPAY-2027-0001")
    assert not any(r.startswith("auto_reply:") for r in reasons(ctx, "reply1@x.be"))


def test_a_bottom_posted_reply_is_answered(ctx, answered):
    """Written under the quote: the sender's own text above it is empty; answered as before."""
    later = AT + dt.timedelta(days=2)
    feed(ctx, reply(answered, quoted(answered) + "\n\nBien reçu, je m'en occupe.", at=later, subject=SUBJECT))
    assert not any(r.startswith("loop:") for r in reasons(ctx, "reply1@x.be"))
    assert [o.purpose for o in outbox(ctx)] == ["form_missing", "form_missing"]


def test_a_reply_to_someone_else_is_not_taken_for_a_loop(ctx, answered):
    """In-Reply-To naming a mail the bot never sent: the client's own thread, answered as today."""
    later = AT + dt.timedelta(days=2)
    mail = Mail(later, CLIENT, [WL], SUBJECT, "Bien reçu.", message_id="<other@x.be>", in_reply_to="<first@x.be>")
    feed(ctx, mail)
    assert [o.purpose for o in outbox(ctx)] == ["form_missing", "form_missing"]


# --- the bot's own texts are never taken for a robot's -------------------------------------------

def test_no_canned_phrase_is_in_the_bots_own_texts():
    """A client may quote an answer without quote marks: no phrase of it may read as a robot's."""
    rules = load_robot_rules()
    files = sorted(TEMPLATES.glob("*.txt")) + sorted(TEMPLATES.glob("_words_*.j2"))
    assert files
    found = {(f.name, m.group(1)) for f in files for _, _, pattern in rules.text_patterns
             for m in [pattern.search(_plain(re.sub(r"{[{%#].*?[}%#]}", " ", f.read_text(encoding="utf-8"))))] if m}
    assert found == set()


def test_an_unmarked_quote_of_the_answer_is_a_persons_reply(ctx, answered):
    body = "Merci.\n\n" + answered.body_text
    outcome = feed(ctx, reply(answered, body, at=AT + dt.timedelta(hours=1)))
    assert outcome.kind == "reply"
    assert json.loads(answered.recipients) == [CLIENT]
