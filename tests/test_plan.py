"""The decision of what to answer, as pure functions: an understanding and the facts read before
it in, intents out (no store, no templates). The flow end to end is in test_answers.py."""

import pytest

from mailbot.answers.facts import Facts, RepliedTo
from mailbot.answers.plan import (
    RULES,
    Answer,
    Case,
    Silence,
    StaffNote,
    decide,
    documents,
    echo,
    robot_mail,
    stranger,
    unrelated_mail,
)
from mailbot.answers.purposes import Purpose
from mailbot.answers.reasons import Reason
from mailbot.answers.render import Renderer
from mailbot.config import load_settings
from mailbot.dossiers.process import Change
from mailbot.forms import FormCheck, Problem, load_rules
from mailbot.mail.documents import Document, Reading, load_document_rules
from mailbot.mail.kinds import Kind, KindCode, classify
from mailbot.mail.parse import parse_mail
from mailbot.mail.robots import load_robot_rules
from mailbot.mail.subject import load_subject_rules, parse_subject
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import Mail, brussels
from mailbot.seen import Seen
from mailbot.store.models import Dossier
from mailbot.trust import sender_auth
from mailbot.understanding import Understanding

SETTINGS = load_settings(SANDBOX_CONFIG)
FORM_RULES = load_rules(SETTINGS.files.form_rules)
SUBJECT_RULES = load_subject_rules(SETTINGS.files.subject_rules)
DOCUMENT_RULES = load_document_rules(SETTINGS.files.document_rules)
ROBOT_RULES = load_robot_rules(SETTINGS.files.robot_rules)
WL = SETTINGS.mailboxes["worldline"].address
CLIENT = "marie.dubois@sambreville.be"
AT = brussels(2027, 3, 1, 9)
NOTHING = Reading((), ())
LINKED = Facts(linked=True, replied_to=None)


def dossier(**flags) -> Dossier:
    return Dossier(id=7, reference="EPAY-2027-0007", project_name="E-guichet", project_key="e-guichet",
                   opened_at=AT, updated_at=AT, **flags)


def case(kind: Kind, code: KindCode, reason: str = "why", *, sender: str = CLIENT, body: str = "Bonjour",
         subject: str = "BOSA M1036 - Bon de commande", headers: dict | None = None, in_dossier: Dossier | None = None,
         unlinked: bool = False, reading: Reading = NOTHING, change: Change | None = None,
         mailboxes: tuple[str, ...] = ("worldline",), facts: Facts = LINKED, envelope_from: str | None = None,
         stamped: bool = True) -> Case:
    """The mail as the sandbox's SMTP server delivers it (stamped; sent with `envelope_from` as
    MAIL FROM, by default its From address), or as put into the mailbox unstamped."""
    sent = Mail(AT, sender, [WL], subject, body, headers=headers or {}, message_id="<m1@sambreville.be>",
                envelope_from=envelope_from)
    raw = sent.delivered() if stamped else sent.to_bytes()
    mail = parse_mail(raw)
    auth = sender_auth(raw, mail, Seen(mailboxes[0]), SETTINGS)
    u = Understanding(mail, parse_subject(mail.subject, SUBJECT_RULES), mailboxes, reading, kind, code, reason,
                      in_dossier, "reference", None, unlinked, change, auth)
    return Case(u, facts, raw, SETTINGS, FORM_RULES, DOCUMENT_RULES, ROBOT_RULES)


def form(complete: bool, *problems: Problem, values: dict | None = None) -> FormCheck:
    return FormCheck("bdc.xlsx", complete, "fr", "V2.2", problems, values or {})


# ------------------------------------------------------------------------- the chain, rule by rule

@pytest.mark.parametrize("kind", [Kind.BOUNCE, Kind.AUTO_REPLY])
def test_robot_mail_is_never_answered_even_from_a_stranger(kind):
    c = case(kind, KindCode.DELIVERY_REPORT, "a delivery report", facts=Facts(False, None))
    assert decide(c) == (Silence(f"{kind.value}: a delivery report"),)
    assert robot_mail(case(Kind.SUBMISSION, KindCode.DOCUMENTS)) is None


def test_staff_mail_is_left_to_staff():
    assert decide(case(Kind.STAFF, KindCode.STAFF_SENDER)) == (Silence("a staff mail: staff answer clients themselves"),)


def test_mail_in_no_dossier_gets_staff_a_note_whatever_its_reason_says():
    # the decision reads the code: rewording the reason for people changes nothing
    got = decide(case(Kind.UNRELATED, KindCode.NO_DOSSIER, "outside every known dossier"))
    assert got == (Silence("unrelated: in no dossier"), StaffNote("worldline", Reason("no_dossier")))


def test_bulk_mail_gets_no_note_even_if_its_reason_reads_like_no_dossier():
    assert decide(case(Kind.UNRELATED, KindCode.BULK, "in no dossier")) == (Silence("unrelated: in no dossier"),)
    assert decide(case(Kind.UNRELATED, KindCode.BULK, "a mailing list (List-Id)")) == \
        (Silence("unrelated: a mailing list (List-Id)"),)
    assert unrelated_mail(case(Kind.REPLY, KindCode.IN_DOSSIER)) is None


def test_the_note_goes_to_the_team_of_the_mailbox_the_mail_came_into():
    [_, note] = decide(case(Kind.UNRELATED, KindCode.NO_DOSSIER, mailboxes=("bosa", "worldline")))
    assert note == StaffNote("bosa", Reason("no_dossier"))


def test_policy_comes_before_privacy_and_documents():
    c = case(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT, sender=WL, in_dossier=dossier())
    assert decide(c) == (Silence("from one of the bot's own mailboxes"),)
    auto = case(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT, headers={"Auto-Submitted": "auto-replied"},
                in_dossier=dossier(), facts=Facts(False, None))
    [silence] = decide(auto)
    assert "Auto-Submitted" in silence.reason


def test_a_sender_with_no_dossier_is_told_nothing():
    got = decide(case(Kind.SUBMISSION, KindCode.ANNOUNCED_FORM, facts=Facts(False, None)))
    assert got == (Silence("privacy: a sender with no dossier gets no dossier details"),
                   StaffNote("worldline", Reason("stranger_no_dossier")))


@pytest.mark.parametrize("unlinked, linked", [(True, True), (False, False), (True, False)])
def test_a_sender_not_linked_before_this_mail_is_told_nothing(unlinked, linked):
    # (True, True): the stranger's own order form named them as a contact while it was applied
    c = case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier(), unlinked=unlinked, facts=Facts(linked, None))
    assert decide(c) == (Silence("privacy: a sender not linked to the dossier gets no dossier details"),
                         StaffNote("worldline", Reason("stranger_in_dossier")))
    assert stranger(case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier())) is None


# ----------------------------------------------------------------------------- sender authentication

WL_STAFF = SETTINGS.mailboxes["worldline"].staff[0]


@pytest.mark.parametrize("sender", [WL, WL_STAFF])
def test_a_forged_staff_mail_is_shown_to_staff_and_nothing_else(sender):
    # sent from the attacker's own server: the sandbox stamps dmarc=fail for worldline.localhost
    c = case(Kind.REPLY, KindCode.IN_DOSSIER, sender=sender, envelope_from="x@attacker-host.com",
             in_dossier=dossier(), unlinked=True)
    why = ("a mail in the name of worldline staff is not authenticated "
           "(DMARC fail for worldline.localhost at sandbox.localhost)")
    assert decide(c) == (Silence(f"not authenticated: {why}"),
                         StaffNote("worldline", f"{why}; it changed nothing and got no answer"))
    # the same mail as a receiving server vouches for it: left to staff, no note
    assert decide(case(Kind.STAFF, KindCode.STAFF_SENDER, sender=sender, in_dossier=dossier())) == \
        (Silence("a staff mail: staff answer clients themselves"),)


def test_a_robot_in_a_staff_name_stays_silent():
    c = case(Kind.AUTO_REPLY, KindCode.AUTO_REPLY_HEADER, "Auto-Submitted", sender=WL, stamped=False)
    assert decide(c) == (Silence("auto_reply: Auto-Submitted"),)


@pytest.mark.parametrize("in_dossier, where", [(dossier(), "it changed no dossier"), (None, "it opened no dossier")])
@pytest.mark.parametrize("stamped, envelope_from, reason", [
    (True, "bounce@attacker-host.com", "DMARC fail for sambreville.be at sandbox.localhost"),
    (False, None, "No Authentication-Results from sandbox.localhost"),
])
def test_an_unauthenticated_client_is_a_stranger_whatever_the_store_says(in_dossier, where, stamped, envelope_from,
                                                                        reason):
    # linked before and after (facts): the From header is the client's, but nothing vouches for it
    c = case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=in_dossier, envelope_from=envelope_from,
             stamped=stamped, unlinked=in_dossier is not None)
    assert not c.understanding.sender_auth.authenticated
    assert decide(c) == (
        Silence(f"privacy: the sender is not authenticated ({reason}): treated as a stranger, no dossier details"),
        StaffNote("worldline", f"the sender is not authenticated ({reason}); {where} and got no answer"))


def test_a_clients_question_is_left_to_a_person():
    got = decide(case(Kind.REPLY, KindCode.IN_DOSSIER, in_dossier=dossier()))
    assert got == (Silence("a client's question in a dossier: a person answers"),)


def test_a_quick_reply_to_the_bots_answer_is_not_answered_again():
    replied = Facts(True, RepliedTo(Purpose.FORM_MISSING, 20.0))
    c = case(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT, in_dossier=dossier(), facts=replied)
    [silence] = decide(c)
    assert silence.reason.startswith("loop: a reply to the bot's form_missing answer 20 s after it")
    # the same mail replying to nothing of the bot's: the missing form is asked for
    [answer] = decide(case(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT, in_dossier=dossier()))
    assert answer == Answer(Purpose.FORM_MISSING, CLIENT, True, {"reason": "no_attachment", "detail": ""})
    # a day later, with a question of its own: answered
    asks = case(Kind.SUBMISSION, KindCode.PROCESS_SUBJECT, in_dossier=dossier(), body="Pouvez-vous confirmer ?",
                facts=Facts(True, RepliedTo(Purpose.FORM_MISSING, 86400.0)))
    assert echo(asks) is None


# ----------------------------------------------------------------------------- the documents' answers

def with_form(check: FormCheck, previous: FormCheck | None = None, **flags) -> Case:
    reading = Reading((Document("order_form", 0, "a workbook", check),), ())
    return case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier(**flags), reading=reading,
                change=Change(("form_checked",), check, previous))


def test_a_complete_form_is_acknowledged_with_bosa_in_copy():
    [answer] = decide(with_form(form(True), convention_received=True))
    assert answer == Answer(Purpose.FORM_COMPLETE, CLIENT, True,
                            {"filename": "bdc.xlsx", "convention_received": True,
                             "prevalidation_days": SETTINGS.deadlines.prevalidation.days, "changes": None},
                            {"problems": []})


def test_a_corrected_form_lists_its_problems_and_what_changed_with_the_forms_labels():
    before = form(False, Problem("postal_code", "missing", "vide"), Problem("billing_email", "invalid", "pas une adresse"))
    after = form(False, Problem("billing_email", "invalid", "pas une adresse", "E-mail facturation"))
    [answer] = decide(with_form(after, before))
    assert answer.purpose == Purpose.FORM_INCOMPLETE and answer.cc_bosa
    assert answer.detail == {"problems": [["billing_email", "invalid"]],
                             "changes": "fixed: postal_code; still wrong: billing_email"}
    assert answer.data["changes"].fixed == [FORM_RULES.label("postal_code", "fr")]
    assert [(p.field, p.label) for p in answer.data["problems"]] == [("billing_email", "E-mail facturation")]


def test_an_order_form_that_cannot_be_read_is_asked_for_again():
    unreadable = FormCheck("bdc.xlsx", False, None, None, (Problem("form", "unreadable", "le fichier est abîmé"),))
    reading = Reading((Document("order_form", 0, "a workbook", unreadable, usable=False),), ())
    [answer] = decide(case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier(), reading=reading))
    assert answer == Answer(Purpose.FORM_MISSING, CLIENT, True, {"reason": "unreadable", "detail": "le fichier est abîmé"},
                            {"problems": [["form", "unreadable"]]})


@pytest.mark.parametrize("id_copy, purpose, data", [
    (True, Purpose.SIGNED_RECEIVED, {"encoding_days": SETTINGS.deadlines.encoding.days, "convention_received": False}),
    (False, Purpose.SIGNED_INCOMPLETE, {"missing": ["id_copy"], "received": ["signed_order_form"], "unusable": []}),
])
def test_signed_documents(id_copy, purpose, data):
    reading = Reading((Document("signed_order_form", 0, "signed"),), ())
    c = case(Kind.SUBMISSION, KindCode.DOCUMENTS, reading=reading,
             in_dossier=dossier(form_status="complete", signed_form_received=True, id_copy_received=id_copy))
    [answer] = decide(c)
    assert (answer.purpose, answer.cc_bosa, dict(answer.data)) == (purpose, False, data)


def test_a_document_that_calls_for_no_answer_is_a_silence():
    reading = Reading((Document("convention", 0, "the convention"),), ())
    c = case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier(form_status="complete"), reading=reading)
    assert decide(c) == (Silence("nothing to answer: convention"),) == documents(c)


def test_the_chain_is_declared_in_order_and_always_decides():
    assert [r.__name__ for r in RULES] == ["robot_mail", "unclear_forward", "forged_staff", "staff_mail", "unrelated_mail",
                                          "must_not_answer", "stranger", "client_question", "echo", "documents"]
    c = case(Kind.SUBMISSION, KindCode.DOCUMENTS, in_dossier=dossier(form_status="complete"))
    assert decide(c) == decide(c) == (Silence("nothing to answer: no document"),)
    assert decide(c, rules=RULES[:-1]) == ()


# --------------------------------------------------------------------------- kinds and purposes

def test_kind_codes_tell_a_list_from_a_mail_in_no_dossier():
    def kind_of(headers):
        mail = parse_mail(Mail(AT, CLIENT, [WL], "Nouvelles", "Bonjour", headers=headers).to_bytes())
        k = classify(mail, None, parse_subject(mail.subject, SUBJECT_RULES), NOTHING, staff_sender=False,
                     in_dossier=False, announces_form=False, rules=ROBOT_RULES)
        return k.kind, k.code
    assert kind_of({"List-Id": "<news.example.org>"}) == (Kind.UNRELATED, KindCode.BULK)
    assert kind_of({}) == (Kind.UNRELATED, KindCode.NO_DOSSIER)


def test_stored_values_do_not_change():
    assert [k.value for k in Kind] == ["bounce", "auto_reply", "submission", "staff", "reply", "unrelated"]
    assert f"{Kind.AUTO_REPLY}" == "auto_reply" and Purpose.NEEDS_HUMAN == "needs_human"


def test_every_purpose_has_its_templates_and_every_template_a_purpose():
    named = {name.split(".")[0] for name in Renderer(None, "Europe/Brussels").env.list_templates(extensions=["txt"])}
    assert named == {p.value for p in Purpose}
