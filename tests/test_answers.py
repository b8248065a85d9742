"""What the bot answers, to whom, and when it must stay silent (RFC 3834, privacy, limits)."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sqlmodel import Session, select

from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels, jpeg_bytes, scan_pdf
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Decision, Event, OutboxMail
from mailbot.transport.stamp import stamp

FORM_RULES = load_rules()

SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
CLIENT = "marie.dubois@sambreville.be"
AT = brussels(2027, 3, 1, 9)


@pytest.fixture
def ctx(tmp_path):
    return Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/a.sqlite"), max_attempts=1)


def form_mail(n=1, sender=CLIENT, headers=None, at=AT, lang="fr", **changes):
    form = fill_form(lang, complete_values(lang, **changes), rules=FORM_RULES)
    subject = "BOSA M1036 - Bon de commande – E-guichet" if lang == "fr" else "BOSA M1036 - Bestelbon – E-loket"
    return Mail(at, sender, [WL], subject, "Bonjour, ci-joint notre bon de commande.", cc=[BOSA],
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<m{n}@sambreville.be>",
                headers=headers or {})


def sent(ctx):
    with Session(ctx.engine) as s:
        return s.exec(select(OutboxMail).order_by(OutboxMail.id)).all()


def decisions(ctx):
    with Session(ctx.engine) as s:
        return [d.reason for d in s.exec(select(Decision).where(Decision.answered == False))]  # noqa: E712


def feed(ctx, mail, at=None):
    """The mail into the worldline inbox, as the sandbox's SMTP server delivers it (stamped with
    its Authentication-Results: the client's own mail passes); raw bytes go in as given."""
    return handle(mail.delivered() if isinstance(mail, Mail) else mail, Seen("worldline"), at or AT, ctx)


def test_incomplete_form_is_answered_with_its_problems(ctx):
    feed(ctx, form_mail(postal_code=None, billing_email="compta"))
    [out] = sent(ctx)
    assert out.purpose == "form_incomplete"
    assert json.loads(out.recipients) == [CLIENT] and json.loads(out.cc) == [BOSA]
    assert out.sender == WL and out.language == "fr"
    assert json.loads(out.detail)["problems"] == [["postal_code", "missing"], ["billing_email", "invalid"]]
    assert "« Code postal » est vide" in out.body_text and "Code postal" in out.body_html
    assert out.subject == "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet"
    assert out.in_reply_to == "m1@sambreville.be" and "<m1@sambreville.be>" in out.references
    assert out.message_id.endswith("@worldline.localhost") and out.state == "pending"


def test_corrected_form_says_what_changed(ctx):
    feed(ctx, form_mail(1, postal_code=None, billing_email="compta"))
    feed(ctx, form_mail(2, billing_email="compta", city="Tamines"), at=AT + dt.timedelta(days=1))
    second = sent(ctx)[1]
    assert second.purpose == "form_incomplete"
    detail = json.loads(second.detail)
    assert detail["problems"] == [["billing_email", "invalid"]]
    assert detail["changes"] == "fixed: postal_code; still wrong: billing_email; changed: city"
    assert "Code postal" in second.body_text and "Commune" in second.body_text
    with Session(ctx.engine) as s:
        history = [e.detail for e in s.exec(select(Event).where(Event.kind == "form_changed"))]
    assert history == ["fixed: postal_code; still wrong: billing_email; changed: city"]


def test_complete_form_in_dutch(ctx):
    feed(ctx, form_mail(lang="nl"))
    [out] = sent(ctx)
    assert (out.purpose, out.language) == ("form_complete", "nl")


def test_form_as_pdf_asks_for_the_workbook(ctx):
    mail = Mail(AT, CLIENT, [WL], "BOSA M1036 - Bon de commande – E-guichet", "ci-joint", cc=[BOSA],
                attachments=[("Bon de commande.pdf", scan_pdf(), "application/pdf")], message_id="<p@x.be>")
    feed(ctx, mail)
    [out] = sent(ctx)
    assert out.purpose == "form_missing"


def test_announced_form_without_attachment(ctx):
    feed(ctx, Mail(AT, CLIENT, [WL], "BOSA M1036 - Bon de commande – E-guichet", "Bonjour, voici notre demande.",
                   message_id="<n@x.be>"))
    [out] = sent(ctx)
    assert out.purpose == "form_missing"


def test_signed_documents(ctx):
    feed(ctx, form_mail(1))
    scan = [("scan_001.pdf", scan_pdf(), "application/pdf")]
    photo = [("IMG_2041.jpg", jpeg_bytes(), "image/jpeg")]
    feed(ctx, Mail(AT + dt.timedelta(days=2), CLIENT, [WL], "RE: [EPAY-2027-0001] documents", "voici", attachments=scan,
                   message_id="<s1@x.be>"), at=AT + dt.timedelta(days=2))
    feed(ctx, Mail(AT + dt.timedelta(days=3), CLIENT, [WL], "RE: [EPAY-2027-0001] documents", "voici", attachments=photo,
                   message_id="<s2@x.be>"), at=AT + dt.timedelta(days=3))
    purposes = [(o.purpose, json.loads(o.detail).get("missing")) for o in sent(ctx)]
    assert purposes == [("form_complete", None), ("signed_incomplete", ["id_copy"]), ("signed_received", None)]
    last = sent(ctx)[-1]  # the convention never came: the client still owes it
    assert "convention d'utilisation signée" in last.body_text and "Aucune action" not in last.body_text


@pytest.mark.parametrize("lang, name, words", [
    ("fr", "Carte d'identité Marie Dubois.jpg", ("« Carte d'identité Marie Dubois.jpg » (9 Ko)", "trop petite")),
    ("nl", "identiteitskaart An Janssens.jpg", ("„identiteitskaart An Janssens.jpg” (9 kB)", "te klein")),
])
def test_a_small_id_copy_is_named_with_why_it_cannot_be_used(ctx, lang, name, words):
    feed(ctx, form_mail(1, lang=lang))
    later = AT + dt.timedelta(days=2)
    feed(ctx, Mail(later, CLIENT, [WL], "RE: [EPAY-2027-0001] documents", "voici / hierbij",
                   attachments=[("scan_001.pdf", scan_pdf(), "application/pdf"),
                                (name, jpeg_bytes(9_000), "image/jpeg")], message_id="<small@x.be>"), at=later)
    out = sent(ctx)[-1]
    assert (out.purpose, out.language) == ("signed_incomplete", lang)
    for body in (out.body_text, out.body_html.replace("&#39;", "'").replace("&nbsp;", " ")):
        assert all(w in body for w in words), body
    with Session(ctx.engine) as s:
        assert [e.kind for e in s.exec(select(Event).where(Event.kind.in_(("id_copy_received", "signed_form_received"))))] \
            == ["signed_form_received"]


@pytest.mark.parametrize("headers, sender, reason", [
    ({"Auto-Submitted": "auto-replied"}, CLIENT, "Auto-Submitted"),
    ({"Auto-Submitted": "auto-generated"}, CLIENT, "Auto-Submitted"),
    ({"Precedence": "bulk"}, CLIENT, "Precedence"),
    ({"List-Id": "<clients.lists.sambreville.be>"}, CLIENT, "List-Id"),
    ({}, "MAILER-DAEMON@sambreville.be", "mailer-daemon"),
    ({}, "postmaster@sambreville.be", "postmaster"),
    ({}, "noreply@sambreville.be", "noreply"),
    ({}, "forms-request@sambreville.be", "-request"),
    ({}, "owner-forms@sambreville.be", "owner-"),
    ({}, WL, "own mailbox"),
    ({"Return-Path": "<>"}, CLIENT, "Return-Path"),
])
def test_rfc3834_no_answer(ctx, headers, sender, reason):
    feed(ctx, form_mail(headers=headers, sender=sender))
    assert [o.purpose for o in sent(ctx) if o.purpose not in ("needs_human",)] == []
    assert any(reason.lower() in d.lower() for d in decisions(ctx)), decisions(ctx)


def test_rfc3834_the_same_mail_without_those_headers_is_answered(ctx):
    feed(ctx, form_mail(headers={"Auto-Submitted": "no"}))
    assert [o.purpose for o in sent(ctx)] == ["form_complete"]


def test_everything_sent_is_auto_submitted(ctx):
    """The header is set when the mail is built for sending; the outbox keeps the purpose."""
    from mailbot.transport.compose import compose

    feed(ctx, form_mail())
    message = compose(sent(ctx)[0])
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-ID"] == f"<{sent(ctx)[0].message_id}>"


def test_one_answer_per_purpose_per_day(ctx):
    """The same form sent again the same day is not answered again (a loop resends what it
    got); another form is, the same day: a person sent a new document (issue 12.2)."""
    first = form_mail(1, postal_code=None)
    feed(ctx, first)
    again = form_mail(2, postal_code=None)
    again.attachments = first.attachments  # the same workbook, byte for byte (its file has a time in it)
    feed(ctx, again, at=AT + dt.timedelta(hours=2))
    assert [o.purpose for o in sent(ctx)] == ["form_incomplete"]
    assert any(d.startswith("limit: a form_incomplete answer already went") for d in decisions(ctx))
    feed(ctx, form_mail(3, postal_code=None, city=None), at=AT + dt.timedelta(hours=3))
    assert [o.purpose for o in sent(ctx)] == ["form_incomplete", "form_incomplete"]
    # a day after the last answer (the workbook may be byte for byte the first one: no new document)
    feed(ctx, form_mail(4, postal_code=None), at=AT + dt.timedelta(days=1, hours=4))
    assert [o.purpose for o in sent(ctx)] == ["form_incomplete"] * 3


def test_stranger_gets_nothing_and_staff_get_a_note(ctx):
    feed(ctx, form_mail(1))
    stranger = Mail(AT + dt.timedelta(hours=1), "curieux@gmail.com", [WL], "RE: [EPAY-2027-0001] mon dossier ?",
                    "Où en est ce dossier ?", message_id="<q@gmail.com>")
    feed(ctx, stranger, at=AT + dt.timedelta(hours=1))
    outs = sent(ctx)
    assert [o.purpose for o in outs] == ["form_complete", "needs_human"]
    note = outs[1]
    assert json.loads(note.recipients) == [WL] and "curieux@gmail.com" in note.body_text
    assert all("curieux@gmail.com" not in o.recipients for o in outs)


def test_forged_from_gets_no_answer(ctx):
    raw = stamp(form_mail().to_bytes().replace(b"From: " + CLIENT.encode(),
                                               b"From: " + CLIENT.encode() + b", attacker@evil-domain.com"), CLIENT)
    feed(ctx, raw)
    assert all("evil-domain" not in o.recipients for o in sent(ctx))
    assert [o.purpose for o in sent(ctx) if o.purpose != "needs_human"] == []


def test_header_injection_in_subject_is_flattened(ctx):
    raw = form_mail().delivered().replace(b"Subject: BOSA M1036 - Bon de commande",
                                          b"Subject: =?utf-8?q?BOSA_M1036_-_Bon_de_commande_=0D=0ABcc:_victim@x.com?=")
    feed(ctx, raw)
    [out] = sent(ctx)
    assert "\n" not in out.subject and "\r" not in out.subject


def test_unsure_language_gets_both(ctx):
    # No form, a subject and a body in no language, no earlier mail: French and Dutch.
    feed(ctx, Mail(AT, CLIENT, [WL], "BOSA M1036", "x", message_id="<z@x.be>",
                   attachments=[("bon de commande.pdf", scan_pdf(), "application/pdf")]))
    [out] = sent(ctx)
    assert out.language == "fr+nl"
    assert "Nederlandse versie" in out.body_text and out.body_html.count("<html") == 1


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    from mailbot.resources import SANDBOX_CONFIG
    from mailbot.config import load_settings
    from mailbot.context import Context
    from mailbot.pipeline import handle
    from mailbot.season import brussels
    from mailbot.seen import Seen
    from mailbot.store.db import open_database
    ctx = Context.load(load_settings(SANDBOX_CONFIG), open_database(sys.argv[1]))
    raw = open(sys.argv[2], "rb").read()
    handle(raw, Seen("worldline"), brussels(2027, 3, 1, 9), ctx)
    print("decided", flush=True)
    time.sleep(60)  # "sending": killed here
""")


@pytest.mark.integration  # a process of its own, killed
def test_outbox_survives_a_crash_between_decision_and_send(tmp_path):
    url = f"sqlite:///{tmp_path}/crash.sqlite"
    eml = tmp_path / "m.eml"
    eml.write_bytes(form_mail(postal_code=None).delivered())
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, url, str(eml)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "decided"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ctx = Context.load(SETTINGS, open_database(url), max_attempts=1)
    [pending] = sent(ctx)
    assert pending.state == "pending" and pending.purpose == "form_incomplete"
    # The restarted bot sees the same mail again: recorded once, answered once.
    outcome = feed(ctx, eml.read_bytes())
    assert outcome.duplicate
    assert [o.message_id for o in sent(ctx)] == [pending.message_id]


def test_a_strangers_form_changes_nothing_a_colleagues_counts(ctx):
    from mailbot.store.models import Contact, Dossier

    feed(ctx, form_mail(1, postal_code=None))
    takeover = form_mail(2, sender="curieux@gmail.com", business_contact_email="curieux@gmail.com")
    takeover.subject = "RE: [EPAY-2027-0001] voici le bon"
    feed(ctx, takeover, at=AT + dt.timedelta(hours=1))
    with Session(ctx.engine) as s:
        dossier = s.exec(select(Dossier)).one()
        assert dossier.form_status == "incomplete"
        assert "curieux@gmail.com" not in s.exec(select(Contact.email)).all()
        kinds = [e.kind for e in s.exec(select(Event).where(Event.dossier_id == dossier.id))]
    assert "unlinked_sender_mail" in kinds
    colleague = form_mail(3, sender="secretariat@sambreville.be")
    colleague.subject = "RE: [EPAY-2027-0001] le bon corrigé"
    feed(ctx, colleague, at=AT + dt.timedelta(hours=2))
    with Session(ctx.engine) as s:
        assert s.exec(select(Dossier)).one().form_status == "complete"
    assert [o.purpose for o in sent(ctx)][-1] == "form_complete"
    assert json.loads(sent(ctx)[-1].recipients) == ["secretariat@sambreville.be"]
