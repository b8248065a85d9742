"""Payment details and contacts a later order form cannot change on its own (issue 10, item 3).

Once a dossier had a complete form, a form changing the settlement IBAN, a contact's address or
the signatory is held: the dossier keeps the earlier values until a person runs `mailbot mark
REF confirm-changes` (or reject-changes); the linked contacts are told (the IBAN masked), staff
too (in full), the digest lists it. The addresses a form names are contacts of record, not linked
for disclosure. Real pipeline (handle), real SQLite, real .xlsx forms.
"""

import datetime as dt
import json

import pytest
from sqlmodel import Session, select

from mailbot.answers.digest import digest_context, digest_draft
from mailbot.answers.scheduled import reminder_drafts
from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.dossiers.process import known_values, last_form
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.forms.changes import mask_iban
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Contact, Dossier, Event, OutboxMail, PendingChange

FORM_RULES = load_rules()
SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
CLIENT = "marie.dubois@sambreville.be"
OLD_IBAN = "BE71 0961 2345 6769"  # the builder's complete form
NEW_IBAN = "BE62 5100 0754 7061"
AT = brussels(2027, 3, 1, 9)
LATER = AT + dt.timedelta(days=1)


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/c.sqlite"


@pytest.fixture
def ctx(db):
    return Context.load(SETTINGS, open_database(db), max_attempts=1)


def form_mail(n, sender=CLIENT, at=AT, subject=None, **changes):
    form = fill_form("fr", complete_values("fr", **changes), rules=FORM_RULES)
    subject = subject or ("BOSA M1036 - Bon de commande – E-guichet" if n == 1
                          else "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet")
    return Mail(at, sender, [WL], subject, "Bonjour, ci-joint notre bon de commande.", cc=[BOSA],
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<c{n}@sambreville.be>")


def feed(ctx, mail, at=None):
    # as the sandbox's SMTP server delivers it: stamped (a receiving server's Authentication-Results)
    outcome = handle(mail.delivered() if isinstance(mail, Mail) else mail, Seen("worldline"), at or mail.at, ctx)
    assert outcome.failed is None, outcome.failed
    return outcome


def outbox(ctx):
    with Session(ctx.engine) as s:
        return s.exec(select(OutboxMail).order_by(OutboxMail.id)).all()


def the_dossier(s):
    return s.exec(select(Dossier)).one()


def pending(ctx):
    with Session(ctx.engine) as s:
        return s.exec(select(PendingChange).order_by(PendingChange.id)).all()


def contacts(ctx):
    with Session(ctx.engine) as s:
        return {c.email: (c.role, c.linked) for c in s.exec(select(Contact))}


def mark(db, step, by="Sophie Peeters"):
    return main(["mark", "EPAY-2027-0001", step, "--by", by, "--config", str(SANDBOX_CONFIG), "--db", db])


def test_the_first_complete_form_is_applied_and_names_contacts_of_record(ctx):
    feed(ctx, form_mail(1))
    assert [o.purpose for o in outbox(ctx)] == ["form_complete"]
    assert pending(ctx) == []
    # The sender is linked; the addresses the form names are kept with their role, not linked.
    assert contacts(ctx) == {CLIENT: ("sender", True), "it-support@sambreville.be": ("technical", False),
                             "comptabilite@sambreville.be": ("billing", False)}
    with Session(ctx.engine) as s:
        assert the_dossier(s).form_status == "complete"
        assert last_form(s, the_dossier(s)).values["settlement_iban"] == OLD_IBAN


def test_a_changed_iban_is_held_told_to_the_client_masked_and_to_staff_in_full(ctx, capsys):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, settlement_iban=NEW_IBAN))
    with Session(ctx.engine) as s:
        dossier = the_dossier(s)
        assert last_form(s, dossier).values["settlement_iban"] == OLD_IBAN  # the earlier values stay in force
        assert known_values(s, dossier)["settlement_iban"] == OLD_IBAN
        assert dossier.form_status == "complete"
        kinds = [e.kind for e in s.exec(select(Event).where(Event.kind.like("changes_%")))]
    assert kinds == ["changes_held"]
    [held] = pending(ctx)
    assert (held.state, held.fields) == ("pending", "settlement_iban")

    first, client, staff = outbox(ctx)
    assert first.purpose == "form_complete"
    # no "your form is complete" for a form that is not in force: the notice instead
    assert (client.purpose, json.loads(client.recipients), json.loads(client.cc)) == ("change_to_confirm", [CLIENT], [])
    assert client.language == "fr" and client.subject.startswith("RE: [EPAY-2027-0001]")
    for body in (client.body_text, client.body_html):
        assert mask_iban(NEW_IBAN) == "BE62 •••• •••• 7061" and "BE62 •••• •••• 7061" in body
        assert "BE71 •••• •••• 6769" in body and CLIENT in body
        for full in (NEW_IBAN, OLD_IBAN, NEW_IBAN.replace(" ", ""), "5100 0754", "0961 2345"):
            assert full not in body
    assert json.loads(client.detail)["fields"] == ["settlement_iban"]
    assert (staff.purpose, json.loads(staff.recipients)) == ("change_to_confirm", [WL])
    assert f"{OLD_IBAN} -> {NEW_IBAN}" in staff.body_text and f"From:      {CLIENT}" in staff.body_text
    assert "mailbot mark EPAY-2027-0001 confirm-changes" in staff.body_text
    assert staff.subject == "[EPAY-2027-0001] [mailbot] changed payment details to confirm: E-guichet"

    with Session(ctx.engine) as s:
        context = digest_context(s, "bosa", LATER + dt.timedelta(hours=1), ctx.calendars["public"], ctx.settings.process.zone)
        [row] = context["changes_to_confirm"]
        assert (row.reference, row.fields, row.sender) == ("EPAY-2027-0001", ["settlement_iban"], CLIENT)
        draft = digest_draft(s, "worldline", LATER + dt.timedelta(hours=1), SETTINGS, ctx.calendars["public"],
                             ctx.renderer)
    assert "COORDONNÉES DE PAIEMENT MODIFIÉES À CONFIRMER (1)" in draft.rendered.text
    assert "EPAY-2027-0001 E-guichet : IBAN du compte de versement ; de " + CLIENT in draft.rendered.text
    assert draft.detail["counts"]["changes_to_confirm"] == 1


def test_confirm_changes_puts_the_held_form_in_force(ctx, db, capsys):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, settlement_iban=NEW_IBAN,
                        technical_contact_email="support@agence-web-wallonie.be"))
    assert "support@agence-web-wallonie.be" not in contacts(ctx)  # the held form is not in force
    assert mark(db, "confirm-changes") == 0
    said = capsys.readouterr().out
    assert "EPAY-2027-0001: changes to settlement_iban, technical_contact_email confirmed by Sophie Peeters" in said
    [held] = pending(ctx)
    assert (held.state, held.decided_by) == ("confirmed", "Sophie Peeters")
    with Session(ctx.engine) as s:
        dossier = the_dossier(s)
        assert last_form(s, dossier).values["settlement_iban"] == NEW_IBAN
        assert [e.detail for e in s.exec(select(Event).where(Event.kind == "changes_confirmed"))] == \
            ["settlement_iban, technical_contact_email: confirmed by Sophie Peeters"]
        assert digest_context(s, "worldline", LATER + dt.timedelta(hours=2), ctx.calendars["public"], ctx.settings.process.zone)[
            "changes_to_confirm"] == []
    # a person vouched for the new technical contact: it is linked now
    assert contacts(ctx)["support@agence-web-wallonie.be"] == ("technical", True)
    # nothing left to decide
    assert mark(db, "confirm-changes") == 0
    assert "no changed payment details or contacts to confirm" in capsys.readouterr().out


def test_reject_changes_keeps_the_earlier_values(ctx, db, capsys):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, settlement_iban=NEW_IBAN, signatory_name="Paul Escroc"))
    assert mark(db, "reject-changes", by="Jan") == 0
    assert "rejected by Jan" in capsys.readouterr().out
    [held] = pending(ctx)
    assert held.state == "rejected" and held.fields == "settlement_iban,signatory_name"
    with Session(ctx.engine) as s:
        form = last_form(s, the_dossier(s))
        assert (form.values["settlement_iban"], form.values["signatory_name"]) == (OLD_IBAN, "Jean Lambert")
    # The client's next form, with the earlier IBAN and another shop URL, is measured against
    # the values in force: nothing to confirm, it applies.
    feed(ctx, form_mail(3, at=LATER + dt.timedelta(days=1), shop_url="https://e.sambreville.be/payer"))
    assert len(pending(ctx)) == 1
    with Session(ctx.engine) as s:
        assert last_form(s, the_dossier(s)).values["shop_url"] == "https://e.sambreville.be/payer"


def test_a_change_of_a_field_that_needs_no_confirmation_applies_at_once(ctx):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, shop_url="https://e.sambreville.be/payer", city="Tamines"))
    assert pending(ctx) == []
    assert [o.purpose for o in outbox(ctx)] == ["form_complete", "form_complete"]
    assert json.loads(outbox(ctx)[1].detail)["changes"] == "changed: city, shop_url"
    with Session(ctx.engine) as s:
        assert last_form(s, the_dossier(s)).values["shop_url"] == "https://e.sambreville.be/payer"


def test_an_iban_typo_then_the_same_iban_again_is_no_change(ctx):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, settlement_iban="BE71 0961 2345 6760"))  # a typo: invalid
    assert [o.purpose for o in outbox(ctx)][-1] == "form_incomplete" and pending(ctx) == []
    feed(ctx, form_mail(3, at=LATER + dt.timedelta(days=1)))  # the IBAN in force before, typed right
    assert pending(ctx) == [] and [o.purpose for o in outbox(ctx)][-1] == "form_complete"


def test_a_newer_form_supersedes_the_held_one(ctx):
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, at=LATER, settlement_iban=NEW_IBAN))
    feed(ctx, form_mail(3, at=LATER + dt.timedelta(hours=3), city="Tamines"))  # back to the IBAN in force
    assert [(p.state, p.decided_by) for p in pending(ctx)] == [("superseded", "a newer order form")]
    with Session(ctx.engine) as s:
        form = last_form(s, the_dossier(s))
        assert (form.values["settlement_iban"], form.values["city"]) == (OLD_IBAN, "Tamines")
        assert digest_context(s, "worldline", LATER + dt.timedelta(hours=4), ctx.calendars["public"], ctx.settings.process.zone)[
            "changes_to_confirm"] == []


def test_a_contact_the_form_names_gets_nothing_when_it_writes(ctx):
    feed(ctx, form_mail(1, technical_contact_email="support@agence-web-wallonie.be"))
    assert contacts(ctx)["support@agence-web-wallonie.be"] == ("technical", False)
    question = Mail(LATER, "support@agence-web-wallonie.be", [WL], "RE: [EPAY-2027-0001] état du dossier",
                    "Bonjour, où en est ce dossier ?", message_id="<q@agence-web-wallonie.be>")
    outcome = feed(ctx, question)
    assert outcome.understanding.unlinked_sender is True
    later = list(outbox(ctx)[1:])
    assert [o.purpose for o in later] == ["needs_human"] and json.loads(later[0].recipients) == [WL]
    # a new address named by a later form: held as a change (not even a contact of record while
    # the form is not in force), told to the linked sender and staff only
    feed(ctx, form_mail(2, at=LATER + dt.timedelta(hours=1), billing_email="factures@escroc-paiements.com"))
    notices = [o for o in outbox(ctx) if o.purpose == "change_to_confirm"]
    assert [json.loads(o.recipients) for o in notices] == [[CLIENT], [WL]]
    assert all("escroc" not in o.recipients for o in outbox(ctx))
    assert "factures@escroc-paiements.com" not in contacts(ctx)


def test_reminders_go_only_to_linked_addresses(ctx):
    # A mail with no usable From names contacts in its form: none of them wrote (and, with no
    # authenticated sender, it opens no dossier at all: issue 10).
    raw = form_mail(1, postal_code=None).to_bytes().replace(f"From: {CLIENT}".encode(), b"From: undisclosed-recipients:;")
    outcome = feed(ctx, raw, at=AT)
    assert outcome.understanding.mail.sender is None and outcome.dossier is None
    feed(ctx, Mail(AT, "an.janssens@lier.be", [WL], "BOSA M1036 - Bestelbon – Lier", "In bijlage.", cc=[BOSA],
                   attachments=[("Bestelbon.xlsx", fill_form("nl", complete_values(
                       "nl", project_name="Lier online", postal_code=None), rules=FORM_RULES), XLSX)],
                   message_id="<l1@lier.be>"))
    assert all(not linked for email, (_, linked) in contacts(ctx).items() if email.endswith("sambreville.be"))
    with Session(ctx.engine) as s:
        drafts = reminder_drafts(s, AT + dt.timedelta(days=14), SETTINGS, ctx.calendars["public"], ctx.renderer)
    assert [d.to for d in drafts] == [("an.janssens@lier.be",)]
