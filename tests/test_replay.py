"""Replaying a season of mail (.eml files built by code) through the real pipeline and store."""

import datetime as dt
import email
import email.policy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session, select

from mailbot.cli import main
from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.replay import replay
from mailbot.resources import SANDBOX_CONFIG as SANDBOX
from mailbot.season import BRUSSELS, XLSX, Mail, brussels, pdf_bytes, season
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import AttachmentRecord, Deadline, Dossier, Event, Message, Sighting
from mailbot.transport.stamp import stamp

FORM_RULES = load_rules()


def write_folder(folder, mails):
    """The mails as exported from the mailboxes they were delivered to: each stamped by the
    sandbox's receiving server, which the sandbox configuration trusts (raw bytes as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, mail in enumerate(mails):
        (folder / f"{i:03d}.eml").write_bytes(mail.delivered() if isinstance(mail, Mail) else mail)
    return folder


def run(tmp_path, mails, until=None):
    settings = load_settings(SANDBOX)
    engine = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    ctx = Context.load(settings, engine, max_attempts=1)
    events = []
    replay([write_folder(tmp_path / "mail", mails)], ctx, events.append, until)
    return events, engine


def received(events):
    return [e for e in events if e["event"] == "received"]


@pytest.fixture(scope="module")
def season_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("season")
    settings = load_settings(SANDBOX)
    events, engine = run(tmp, season(settings), until=brussels(2027, 2, 5, 18))
    return events, engine


def test_season_kinds_and_dossiers(season_run):
    events, _ = season_run
    got = [(e["kind"], e["dossier"], e["documents"]) for e in received(events)]
    assert got == [
        ("submission", "EPAY-2027-0001", ["order_form"]),
        ("submission", "EPAY-2027-0002", ["order_form"]),
        ("auto_reply", "EPAY-2027-0002", []),
        ("submission", "EPAY-2027-0001", ["convention"]),
        ("submission", "EPAY-2027-0003", ["order_form"]),
        ("unrelated", None, []),
        ("submission", "EPAY-2027-0002", ["order_form"]),
        ("submission", "EPAY-2027-0003", ["order_form"]),
        ("staff", "EPAY-2027-0001", []),
        ("submission", "EPAY-2027-0001", ["signed_order_form", "id_copy"]),
        ("bounce", None, []),
        ("reply", "EPAY-2027-0001", []),
        ("staff", "EPAY-2027-0001", []),
    ]


def test_season_mailboxes_and_problems(season_run):
    events, _ = season_run
    first, lier = received(events)[0], received(events)[1]
    assert first["mailboxes"] == ["bosa", "worldline"]
    assert "problems" in lier and ["settlement_iban", "invalid"] in lier["problems"]
    assert ["payment_methods", "missing"] in lier["problems"]
    stranger = received(events)[11]
    assert stranger.get("unlinked_sender") is True


def test_season_deadlines(season_run):
    events, engine = season_run
    alerts = [(e["purpose"], e["dossier"], e["deadline"], e["due"]) for e in events
              if e["event"] == "sent" and e["purpose"] in ("warning", "escalation")]
    # Sambreville's form (Mon 11 Jan) is due Thu 14 Jan: warned Wed 13, met by Worldline on the 14th.
    # Lier's corrected form (Wed 13 Jan) and Namur's workbook (Wed 13 Jan): due Mon 18 Jan,
    # warned on Fri 15 Jan, escalated at the first sweep of Tue 19 Jan.
    assert alerts == [
        ("warning", "EPAY-2027-0001", "prevalidation", "2027-01-14"),
        ("warning", "EPAY-2027-0002", "prevalidation", "2027-01-18"),
        ("warning", "EPAY-2027-0003", "prevalidation", "2027-01-18"),
        ("escalation", "EPAY-2027-0002", "prevalidation", "2027-01-18"),
        ("escalation", "EPAY-2027-0003", "prevalidation", "2027-01-18"),
    ]
    at = {e["dossier"]: e["at"] for e in events if e["event"] == "sent" and e["purpose"] == "escalation"}
    assert dt.datetime.fromisoformat(at["EPAY-2027-0002"]).astimezone(BRUSSELS) == brussels(2027, 1, 19, 9)
    with Session(engine) as s:
        sambre = s.exec(select(Dossier).where(Dossier.reference == "EPAY-2027-0001")).one()
        assert (sambre.prevalidated, sambre.signed_form_received, sambre.id_copy_received, sambre.access_sent,
                sambre.convention_received) == (True, True, True, True, True)
        states = {(d.name, d.state) for d in s.exec(select(Deadline).where(Deadline.dossier_id == sambre.id))}
        assert states == {("prevalidation", "met"), ("encoding", "met")}
        kinds = [e.kind for e in s.exec(select(Event).where(Event.dossier_id == sambre.id).order_by(Event.id))]
        assert kinds[:3] == ["dossier_opened", "form_complete", "deadline_started"]
        assert "prevalidated" in kinds and "access_sent" in kinds


def test_id_copy_keeps_only_metadata(season_run):
    _, engine = season_run
    with Session(engine) as s:
        ids = s.exec(select(AttachmentRecord).where(AttachmentRecord.document == "id_copy")).all()
        assert [(a.filename, a.size, len(a.sha256)) for a in ids] == [("IMG_2041.jpg", 80006, 64)]
        columns = set(AttachmentRecord.model_fields)
        assert not columns & {"data", "content", "payload"}


def test_same_mail_in_both_inboxes_without_message_id(tmp_path):
    settings = load_settings(SANDBOX)
    wl, bosa = settings.mailboxes["worldline"].address, settings.mailboxes["bosa"].address
    form = fill_form("fr", complete_values("fr"), rules=FORM_RULES)
    mail = Mail(brussels(2027, 3, 1, 9), "marie.dubois@sambreville.be", [wl], "BOSA M1036 - Bon de commande – Projet X",
                "ci-joint", cc=[bosa], attachments=[("bdc.xlsx", form, XLSX)])
    raw = mail.delivered()
    assert b"Message-ID" not in raw
    # The same mail as delivered to each inbox: different trace headers, same content.
    copy_wl = b"Delivered-To: " + wl.encode() + b"\r\nReceived: from a by b\r\n" + raw
    copy_bosa = b"Delivered-To: " + bosa.encode() + b"\r\nReceived: from c by d; other\r\n" + raw
    events, engine = run(tmp_path, [copy_wl, copy_bosa])
    assert [e.get("duplicate", False) for e in received(events)] == [False, True]
    assert received(events)[1]["dossier"] == received(events)[0]["dossier"] == "EPAY-2027-0001"
    with Session(engine) as s:
        assert len(s.exec(select(Message)).all()) == 1
        assert sorted(p.mailbox for p in s.exec(select(Sighting))) == ["bosa", "worldline"]


def test_order_form_without_bosa_in_copy_is_recorded(tmp_path):
    settings = load_settings(SANDBOX)
    wl = settings.mailboxes["worldline"].address
    mail = Mail(brussels(2027, 3, 1, 9), "marie.dubois@sambreville.be", [wl], "BOSA M1036 - Bon de commande – Projet X",
                "ci-joint", attachments=[("bdc.xlsx", fill_form("fr", complete_values("fr"), rules=FORM_RULES), XLSX)])
    events, engine = run(tmp_path, [mail])
    assert "bosa_copy_missing" in received(events)[0]["changes"]
    with Session(engine) as s:
        assert s.exec(select(Dossier)).one().bosa_copy_missing is True


def test_two_projects_from_one_sender(tmp_path):
    settings = load_settings(SANDBOX)
    wl, bosa = settings.mailboxes["worldline"].address, settings.mailboxes["bosa"].address
    sender = "marie.dubois@sambreville.be"
    a = fill_form("fr", complete_values("fr", project_name="Piscine communale"), rules=FORM_RULES)
    b = fill_form("fr", complete_values("fr", project_name="Cimetières en ligne"), rules=FORM_RULES)
    mails = [
        Mail(brussels(2027, 3, 1, 9), sender, [wl], "BOSA M1036 - Bon de commande – Piscine communale", "ci-joint",
             cc=[bosa], attachments=[("bdc.xlsx", a, XLSX)]),
        Mail(brussels(2027, 3, 1, 10), sender, [wl], "Bosa m1036 - bon de commande - CIMETIERES EN LIGNE", "ci-joint",
             cc=[bosa], attachments=[("bdc.xlsx", b, XLSX)]),
        Mail(brussels(2027, 3, 2, 10), sender, [bosa], "Convention - Piscine Communale", "convention signée",
             attachments=[("convention signée.pdf", pdf_bytes("Convention d'utilisation"), "application/pdf")]),
    ]
    events, _ = run(tmp_path, mails)
    # The convention's subject names no framework, but the sender's dossiers tell which project.
    assert [e["dossier"] for e in received(events)] == ["EPAY-2027-0001", "EPAY-2027-0002", "EPAY-2027-0001"]
    assert received(events)[2]["matched_by"] == "sender_subject"


@pytest.mark.parametrize("subject", [
    "RE: TR: Fwd: BOSA M1036 - Bon de commande – Ville de Huy",
    "bosa m 1036 – bon de commande : ville de huy",
    "=?windows-1252?Q?BOSA_M1036_-_Bon_de_commande_=96_Ville_de_Huy?=",
])
def test_loose_subjects_find_the_project(tmp_path, subject):
    settings = load_settings(SANDBOX)
    wl = settings.mailboxes["worldline"].address
    form = fill_form("fr", complete_values("fr", project_name="Ville de Huy"), rules=FORM_RULES)
    first = Mail(brussels(2027, 3, 1, 9), "it@huy.be", [wl], "BOSA M1036 - Bon de commande – Ville de Huy", "ci-joint",
                 attachments=[("bdc.xlsx", form, XLSX)])
    raw = Mail(brussels(2027, 3, 2, 9), "someone.else@huy.be", [wl], "x", "Une question sur notre dossier.").delivered()
    raw = raw.replace(b"Subject: x", b"Subject: " + subject.encode())
    events, _ = run(tmp_path, [first, raw])
    assert received(events)[1]["dossier"] == "EPAY-2027-0001"


def test_forwarded_order_form_is_found(tmp_path):
    from email.message import EmailMessage

    settings = load_settings(SANDBOX)
    wl = settings.mailboxes["worldline"].address
    inner = Mail(brussels(2027, 3, 1, 9), "it@huy.be", ["finance@huy.be"], "bon de commande", "voir pièce jointe",
                 attachments=[("Bon de commande.xlsx", fill_form("fr", complete_values("fr"), rules=FORM_RULES), XLSX)]).to_bytes()
    outer = EmailMessage()
    outer["From"] = "finance@huy.be"
    outer["To"] = wl
    outer["Subject"] = "TR: BOSA M1036 - Bon de commande – Ville de Huy"
    outer["Date"] = "Mon, 01 Mar 2027 10:00:00 +0100"
    outer.set_content("Je vous transfère le bon de commande.")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    events, _ = run(tmp_path, [stamp(outer.as_bytes(), "finance@huy.be")])
    assert received(events)[0]["kind"] == "submission"
    assert received(events)[0]["documents"] == ["order_form"]


def test_cli_replay_json(tmp_path, capsys):
    settings = load_settings(SANDBOX)
    folder = write_folder(tmp_path / "mail", season(settings)[:3])
    assert main(["replay", "--json", "--config", str(SANDBOX), str(folder)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line.get("purpose")) for line in lines] == [
        ("received", None), ("sent", "form_complete"), ("received", None), ("sent", "form_incomplete"), ("received", None),
        ("dossier", None), ("dossier", None)]
    lier = lines[-1]
    assert lier["dossier"] == "EPAY-2027-0002" and lier["stage"] == "form_incomplete"
    assert ["client", "corrected_order_form"] in lier["waiting"]
    assert set(lines[0]) >= {"event", "at", "message_id", "mailboxes", "kind", "documents", "dossier"}
    assert lines[0]["message_id"] == "sambre-1@mail.client.example.net"


def test_cli_replay_timeline(tmp_path, capsys):
    settings = load_settings(SANDBOX)
    folder = write_folder(tmp_path / "mail", season(settings))
    assert main(["replay", str(folder), "--until", "2027-01-20T18:00"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(" received " in line for line in lines) == 13
    escalations = [line for line in lines if " sent " in line and "escalation" in line]
    assert len(escalations) == 2 and "EPAY-2027-0002" in escalations[0]


@pytest.mark.parametrize("received_at, due", [
    (brussels(2027, 3, 25, 10), "2027-03-31"),  # Easter Monday 29 March 2027
    (brussels(2027, 11, 9, 10), "2027-11-15"),  # Armistice, Thursday 11 November 2027
    (brussels(2026, 12, 23, 10), "2026-12-29"),  # Christmas Friday 25 December 2026
    (brussels(2027, 5, 4, 10), "2027-05-10"),  # Ascension, Thursday 6 May 2027
])
def test_deadlines_skip_holidays(tmp_path, received_at, due):
    settings = load_settings(SANDBOX)
    wl = settings.mailboxes["worldline"].address
    mail = Mail(received_at, "it@huy.be", [wl], "BOSA M1036 - Bon de commande – Ville de Huy", "ci-joint",
                attachments=[("bdc.xlsx", fill_form("fr", complete_values("fr"), rules=FORM_RULES), XLSX)])
    events, _ = run(tmp_path, [mail], until=received_at + dt.timedelta(days=14))
    alerts = [(e["purpose"], e["due"]) for e in events if e["event"] == "sent" and e["purpose"] in ("warning", "escalation")]
    assert alerts == [("warning", due), ("escalation", due)]
    [summary] = [e for e in events if e["event"] == "dossier"]
    assert summary["deadlines"] == [{"name": "prevalidation", "due": due, "state": "open", "late": True}]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000))
def test_no_byte_string_crashes_the_pipeline(tmp_path, raw):
    ctx = Context.load(load_settings(SANDBOX), open_database(f"sqlite:///{tmp_path}/fuzz.sqlite"), max_attempts=1)
    outcome = handle(raw, Seen("worldline"), brussels(2027, 3, 1, 9), ctx)
    assert outcome.quarantined is None, outcome.quarantined
    with Session(ctx.engine) as s:
        assert s.get(Message, outcome.message_pk) is not None


def test_replay_reads_a_pdf_bomb_within_the_same_bounds(tmp_path):
    """Replay reads in its own process, with the daemon's PDF bounds: the bomb of issue 10 is
    recorded as not read and the mail after it goes through."""
    import pdfs

    bomb = Mail(brussels(2027, 3, 1, 9), "jan.peeters@gent.be", ["ecom-belgium@worldline.localhost"], "Documents",
                "Zie bijlage.", attachments=[("document.pdf", pdfs.bomb_pdf(30), "application/pdf")],
                message_id="<bomb@gent.be>")
    form = fill_form("fr", complete_values("fr", project_name="Piscine"), rules=FORM_RULES)
    after = Mail(brussels(2027, 3, 1, 10), "marie.dubois@sambreville.be", ["ecom-belgium@worldline.localhost"],
                 "BOSA M1036 - Bon de commande – Piscine", "ci-joint",
                 attachments=[("Bon de commande.xlsx", form, XLSX)], message_id="<form@sambreville.be>")
    events, engine = run(tmp_path, [bomb, after])
    assert [e.get("quarantined") for e in received(events)] == [None, None]
    assert any(e["event"] == "sent" and e["purpose"] == "form_complete" for e in events)
    with Session(engine) as s:
        [att] = s.exec(select(AttachmentRecord).where(AttachmentRecord.filename == "document.pdf")).all()
    assert att.reason.startswith("a PDF past the reading bounds")
