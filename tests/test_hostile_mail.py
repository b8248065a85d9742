"""Hostile mail through the whole pipeline: `handle`, from the raw bytes to the outbox.

test_parse.py bounds the parser alone; here every input goes through record, parse, documents,
dossier, kind and answers, into a real (temporary SQLite) store, as the daemon feeds it:

* real-world malformed mail from the public test suites of mail software (tests/corpus/,
  sources and licences in tests/corpus/README.md);
* cases built here, in code: one per defect class of the standard library's parser, header
  injection, From forgeries, bombs (parts, nesting, headers, size);
* property tests: arbitrary bytes, mails assembled from random headers and parts, and random
  mutations of the realistic mails of `mailbot.season`.

For EVERY input: `handle` raises nothing; the mail is recorded (a Message row, where it was
seen) and processed, or quarantined with its reason; it takes under 2 s and its tracemalloc
peak stays under 50 MB (300 MB for the 50 MB mails); and every outbox row it causes goes to a
configured mailbox, or to the mail's own sender when that sender is linked to the dossier:
never to an address the input forged (a name, a second From, Reply-To, Sender, an encoded word).
Each outbox row is also composed as it would be sent, and must carry no injected header.

Time and memory are measured on two runs of the same input into two databases fed the same
mails: tracemalloc slows the standard library's parser five-fold on 10,000 parts, so a traced
run says nothing about time. `max_attempts=1`: a mail that fails is quarantined at once.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email
import email.errors
import email.utils
import hashlib
import itertools
import json
import logging
import re
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import Session, select

from mailbot.config import load_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels, scan_pdf, season
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Contact, Message, OutboxMail, Sighting
from mailbot.transport.compose import compose
from mailbot.transport.stamp import stamp
from mailbot.understanding import Outcome

FORM_RULES = load_rules()

SETTINGS = load_settings(SANDBOX_CONFIG)
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
WL_STAFF = SETTINGS.mailboxes["worldline"].staff[0]
# Where the bot may write without a dossier: the configured mailboxes and their staff.
STAFF_ADDRESSES = frozenset(box.address for box in SETTINGS.mailboxes.values()) | frozenset(
    a for box in SETTINGS.mailboxes.values() for a in box.staff)
CLIENT = "marie.dubois@sambreville.be"  # the victim: linked to dossier EPAY-2027-0001
ATTACKER = "attacker@evil.example"
AT = brussels(2027, 3, 1, 9)
LATER = brussels(2027, 3, 3, 9)  # two days on: no per-day answer limit hides an answer
CORPUS = Path(__file__).resolve().parent / "corpus"

# A hang guard, not a speed figure (speed is measured in bench/): a blow-up in the size of the
# input (quadratic parsing of 50 MB) takes minutes, far past it, while a loaded machine does not.
SECONDS = 20.0
PEAK_BYTES = 50_000_000
BIG_PEAK_BYTES = 300_000_000
# the headers compose() writes; anything else in a composed answer was injected
COMPOSED_HEADERS = {"from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
                    "auto-submitted", "x-auto-response-suppress", "x-mailbot-purpose", "content-language",
                    "mime-version", "content-type", "content-transfer-encoding"}
_ADDR_SPEC = re.compile(r"[^\s@<>()\[\]\\,;:\"]+@[^\s@<>()\[\]\\,;:\"]+")


def plain_address(address: str) -> bool:
    """One printable addr-spec, without an encoded word (RFC 2047 forbids them there)."""
    return bool(_ADDR_SPEC.fullmatch(address)) and address.isprintable() and "=?" not in address


_SHARED: dict[str, object] = {}


def _blank_database() -> Path:
    """An empty store at the newest migration, made once; each test copies it."""
    if "blank" not in _SHARED:
        directory = tempfile.TemporaryDirectory(prefix="mailbot-hostile-")  # removed at exit
        path = Path(directory.name) / "blank.sqlite"
        ctx = Context.load(SETTINGS, open_database(f"sqlite:///{path}"), max_attempts=1)
        checkpoint(ctx)
        _SHARED.update(directory=directory, blank=path, context=ctx)
    return _SHARED["blank"]  # type: ignore[return-value]


def checkpoint(ctx: Context) -> None:
    """Everything in the main database file (WAL folded in), so that the file can be copied."""
    with ctx.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    ctx.engine.dispose()


def new_context(path: Path, template: Path | None = None) -> Context:
    """A store copied from `template` (or a blank one), with the rules and templates loaded once."""
    shutil.copyfile(template or _blank_database(), path)
    base = _SHARED["context"]
    assert isinstance(base, Context)
    return dataclasses.replace(base, engine=open_database(f"sqlite:///{path}", migrate=False))


@dataclass(frozen=True)
class Fed:
    outcome: Outcome  # of the timed run
    seconds: float
    peak_bytes: int


class Pipeline:
    """Two stores fed the same mails: one run timed, the other traced by tracemalloc."""

    def __init__(self, directory: Path, templates: tuple[Path, Path] | None = None) -> None:
        self.directory = directory
        self.timed = new_context(directory / "timed.sqlite", templates[0] if templates else None)
        self.traced = new_context(directory / "traced.sqlite", templates[1] if templates else None)

    def save(self) -> tuple[Path, Path]:
        """The two database files, to copy into other pipelines (this one is closed)."""
        checkpoint(self.timed)
        checkpoint(self.traced)
        return self.directory / "timed.sqlite", self.directory / "traced.sqlite"

    def feed(self, raw: bytes, at=AT, mailbox: str = "worldline", peak_limit: int = PEAK_BYTES,
             forged: Iterable[str] = (), mail_from: str | None = None) -> Fed:
        """handle() twice, then every assertion of the module docstring on both stores.
        `mail_from`: the mail as the sandbox's SMTP server delivers it when sent with that
        envelope sender (stamped with its Authentication-Results); None: the bytes as given."""
        if mail_from is not None:
            raw = stamp(raw, mail_from)
        seen = Seen(mailbox)
        started = time.perf_counter()
        outcome = handle(raw, seen, at, self.timed)
        seconds = time.perf_counter() - started
        tracemalloc.start()
        try:
            traced = handle(raw, seen, at, self.traced)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert seconds < SECONDS, f"handle took {seconds:.2f} s"
        assert peak < peak_limit, f"handle peaked at {peak / 1e6:.0f} MB"
        forged = tuple(forged)
        for ctx, result in ((self.timed, outcome), (self.traced, traced)):
            assert_recorded(ctx, result)
            assert_outbox_safe(ctx, result, forged)
        assert (traced.kind, traced.dossier, traced.duplicate) == (outcome.kind, outcome.dossier, outcome.duplicate)
        return Fed(outcome, seconds, peak)


def assert_recorded(ctx: Context, outcome: Outcome) -> None:
    with Session(ctx.engine) as s:
        msg = s.get(Message, outcome.message_pk)
        assert msg is not None and msg.key == outcome.key
        assert s.exec(select(Sighting).where(Sighting.message_pk == msg.id)).first() is not None
        assert msg.status in ("processed", "quarantined"), (msg.status, msg.status_reason)
        if msg.status == "quarantined":
            assert msg.status_reason.strip()
        if not outcome.duplicate:
            assert (msg.status == "quarantined") == (outcome.quarantined is not None)
        # Stricter than the contract above: a mail is quarantined only when a stage raised, and
        # handle's last resort must never have to act on any input here.
        assert msg.status == "processed", msg.status_reason


def assert_outbox_safe(ctx: Context, outcome: Outcome, forged: tuple[str, ...]) -> None:
    with Session(ctx.engine) as s:
        rows = s.exec(select(OutboxMail).where(OutboxMail.cause_pk == outcome.message_pk)).all()
        cause = s.get(Message, outcome.message_pk)
        for row in rows:
            to, cc = json.loads(row.recipients), json.loads(row.cc)
            for address in to + cc:
                assert not any(f.lower() in address.lower() for f in forged), (row.purpose, address)
                assert plain_address(address), address
                if address in STAFF_ADDRESSES:
                    continue
                # a client: only the sender of the mail, and only when linked to the dossier
                assert address in to and address == cause.sender, (row.purpose, address, cause.sender)
                assert row.dossier_id is not None
                assert s.exec(select(Contact).where(Contact.dossier_id == row.dossier_id,
                                                    Contact.email == address)).first() is not None
            assert_composes_cleanly(row, to, cc)


def assert_composes_cleanly(row: OutboxMail, to: list[str], cc: list[str]) -> None:
    assert "\n" not in row.subject and "\r" not in row.subject
    # as the SMTP client writes it (SMTPUTF8 when an address is not ASCII)
    sent = email.message_from_string(compose(row).as_string(policy=email_policy.SMTPUTF8))
    names = [n.lower() for n in sent.keys()]  # noqa: SIM118 - a Message
    assert set(names) <= COMPOSED_HEADERS, names
    assert len(names) == len(set(names)), names
    assert [a for _, a in email.utils.getaddresses(sent.get_all("to", []))] == to
    assert [a for _, a in email.utils.getaddresses(sent.get_all("cc", []))] == cc


@pytest.fixture
def pipe(tmp_path) -> Pipeline:
    return Pipeline(tmp_path)


@pytest.fixture(autouse=True)
def _quiet_pdf_reader():
    # pypdf logs a warning for each broken PDF ("EOF marker not found"): 500 of them per bomb
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


# ---------------------------------------------------------------- building blocks

FORM = fill_form("fr", complete_values("fr"), rules=FORM_RULES)
SUBJECT = "BOSA M1036 - Bon de commande – E-guichet"


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def head(*lines: str | bytes, sender: str = f"Marie Dubois <{CLIENT}>", subject: str = SUBJECT,
         mid: str | None = "<hostile@sambreville.be>") -> bytes:
    """The top header block (without the empty line) of a mail from the client to Worldline."""
    out = [f"From: {sender}".encode(), f"To: {WL}".encode(), f"Cc: {BOSA}".encode(),
           b"Date: Mon, 1 Mar 2027 09:00:00 +0100", b"Subject: " + subject.encode()]
    if mid:
        out.append(f"Message-ID: {mid}".encode())
    out += [line.encode() if isinstance(line, str) else line for line in lines]
    return b"\r\n".join(out) + b"\r\n"


def form_part(name: str = "Bon de commande.xlsx", data: bytes = FORM) -> bytes:
    return (f'Content-Type: {XLSX}; name="{name}"\r\nContent-Disposition: attachment; filename="{name}"\r\n'
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + b64(data)


TEXT_PART = b"Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour, ci-joint notre bon de commande.\r\n"


def multipart_body(boundary: bytes, *parts: bytes, close: bool = True) -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def form_mail_bytes(sender: str = CLIENT, subject: str = SUBJECT, mid: str = "<m1@sambreville.be>",
                    at=AT) -> bytes:
    return Mail(at, sender, [WL], subject, "Bonjour, ci-joint notre bon de commande.", cc=[BOSA],
                attachments=[("Bon de commande.xlsx", FORM, XLSX)], message_id=mid).to_bytes()


def stdlib_defects(raw: bytes) -> set[str]:
    """The defect classes the standard library's parser reports on `raw`: compat32's tree, the
    default policy's header objects, and the payloads decoded."""
    found: set[str] = set()
    for pol in (email_policy.compat32, email_policy.default):
        msg = BytesParser(policy=pol).parsebytes(raw)
        for part in msg.walk():
            if pol is email_policy.default:
                for name in part.keys():  # noqa: SIM118 - a Message
                    found |= {type(d).__name__ for d in part[name].defects}
            if not part.is_multipart():
                part.get_payload(decode=True)
            found |= {type(d).__name__ for d in part.defects}
    return found


# ---------------------------------------------------------------- 1. the corpus

CORPUS_FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.name not in ("LICENSE", "NOTICE"))


@pytest.fixture(scope="module")
def corpus_pipe(tmp_path_factory) -> Pipeline:
    """One store for the whole corpus, as one mailbox would receive it."""
    return Pipeline(tmp_path_factory.mktemp("corpus"))


def test_corpus_is_there_and_small():
    sources = {p.parent.name for p in CORPUS_FILES}
    assert sources == {"cpython", "mail-parser"}
    assert len(CORPUS_FILES) >= 60
    assert sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()) < 2_000_000
    for source in sources:
        assert (CORPUS / source / "LICENSE").is_file()


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_mail(corpus_pipe, path):
    raw = path.read_bytes()
    fed = corpus_pipe.feed(raw, at=AT)
    assert fed.outcome.kind is not None


def test_corpus_mail_delivered_to_the_bosa_mailbox_too(tmp_path):
    """Seen in the other watched mailbox (and seen twice): recorded once, each place kept."""
    pipe = Pipeline(tmp_path)
    for path in CORPUS_FILES[::2]:
        pipe.feed(path.read_bytes(), mailbox="bosa")
    for path in CORPUS_FILES[::8]:
        assert pipe.feed(path.read_bytes(), mailbox="worldline").outcome.duplicate


# ---------------------------------------------------------------- 2a. one case per stdlib defect class

def _defect_cases() -> dict[str, bytes]:
    mixed = b'Content-Type: multipart/mixed; boundary="b"'
    text = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    body = b"\r\n" + multipart_body(b"b", TEXT_PART, form_part())
    return {
        "NoBoundaryInMultipartDefect": head(b"Content-Type: multipart/mixed") + body,
        "StartBoundaryNotFoundDefect": head(mixed) + b"\r\n" + multipart_body(b"other", TEXT_PART, form_part()),
        "CloseBoundaryNotFoundDefect": head(mixed) + b"\r\n" + multipart_body(b"b", TEXT_PART, form_part(), close=False),
        "FirstHeaderLineIsContinuationDefect": b" continued\r\n" + head(mixed) + body,
        "MisplacedEnvelopeHeaderDefect": head(f"From {ATTACKER} Mon Mar  1 09:00:00 2027", "X-After: 1", mixed) + body,
        "MissingHeaderBodySeparatorDefect": head(mixed, "this line is no header") + body,
        "MultipartInvariantViolationDefect": head(mixed) + b"\r\nno boundary anywhere\r\n",
        "InvalidMultipartContentTransferEncodingDefect": head(mixed, "Content-Transfer-Encoding: base64") + body,
        "UndecodableBytesDefect": head(sender=f"=?utf-8?b?//79?= <{CLIENT}>") + b"\r\nBonjour\r\n",
        "InvalidBase64PaddingDefect": head() + text + b"Qm9uam91cg\r\n",
        "InvalidBase64CharactersDefect": head() + text + b"Qm9u!am91cg==\r\n",
        "InvalidBase64LengthDefect": head() + text + b"Qm9uam91c\r\n",
        "HeaderMissingRequiredValue": head("MIME-Version:", "Content-Type: ;charset=utf-8") + b"\r\nBonjour\r\n",
        "NonPrintableDefect": head("Content-Type: text/plain; charset*=utf-8''a%01b",
                                   "Content-Disposition: inline; filename*=utf-8''\x01x.txt") + b"\r\nBonjour\r\n",
        "ObsoleteHeaderDefect": head("Reply-To: marie . dubois @ sambreville.be,,") + b"\r\nBonjour\r\n",
        "NonASCIILocalPartDefect": head(sender="mârie.dubois@sambreville.be") + b"\r\nBonjour\r\n",
        "InvalidDateDefect": head().replace(b"Mon, 1 Mar 2027 09:00:00 +0100", b"the day after tomorrow")
        + b"\r\nBonjour\r\n",
    }


DEFECT_CASES = _defect_cases()


def test_one_case_per_defect_class_of_the_standard_library():
    classes = {n for n in dir(email.errors) if n.endswith("Defect") or n == "HeaderMissingRequiredValue"}
    generic = {"MessageDefect", "HeaderDefect", "InvalidHeaderDefect", "MalformedHeaderDefect"}
    assert classes - generic <= set(DEFECT_CASES)


@pytest.mark.parametrize("name", sorted(DEFECT_CASES))
def test_stdlib_defect_class(pipe, name):
    raw = DEFECT_CASES[name]
    assert name in stdlib_defects(raw), "the case no longer shows the defect it is named after"
    pipe.feed(raw)


# ---------------------------------------------------------------- 2b. header injection

INJECTED = f"Bcc: {ATTACKER}"
INJECTIONS = {
    "subject encoded CRLF": head(subject="=?utf-8?q?BOSA_M1036_-_Bon_de_commande_=0D=0ABcc:_attacker=40evil.example?="),
    "subject encoded LF only": head(subject="=?utf-8?q?BOSA_M1036_-_Bon_de_commande=0ABcc:_attacker=40evil.example?="),
    "subject base64 CRLF": head(subject="=?utf-8?b?" + base64.b64encode(f"{SUBJECT}\r\n{INJECTED}".encode()).decode() + "?="),
    "subject bare CR": head(subject=f"{SUBJECT}\r{INJECTED}"),
    "subject NUL and controls": head(subject=f"{SUBJECT}=?utf-8?q?=00=07=1B[2J=0B=0C?="),
    "subject CRLF CRLF": head(subject="=?utf-8?q?BOSA_M1036=0D=0A=0D=0A<html>injected body?="),
    "subject unicode line separators": head(subject=f"{SUBJECT}\u2028{INJECTED}\u2029\x85Cc: {ATTACKER}"),
    "from name encoded CRLF": head(sender=f"=?utf-8?q?Marie=0D=0ABcc=3A_{ATTACKER.replace('@', '=40')}?= <{CLIENT}>"),
    "from name bare CR": head(sender=f"Marie\r{INJECTED} <{CLIENT}>"),
    "from name quoted CRLF": head(sender=f'"Marie\\\r\\\n{INJECTED}" <{CLIENT}>'),
    "folded header then injection": head(subject=f"{SUBJECT}\r\n {INJECTED}"),
}


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_header_injection(pipe, name):
    """Sent as a new client's form: the bot answers the client, on one-line headers only."""
    raw = INJECTIONS[name] + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + multipart_body(
        b"b", TEXT_PART, form_part())
    fed = pipe.feed(raw, forged=[ATTACKER], mail_from=CLIENT)
    mail = fed.outcome.understanding.mail
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert all("\n" not in a.name and "\r" not in a.name for a in mail.from_all)
    with Session(pipe.timed.engine) as s:
        rows = [(r.purpose, json.loads(r.recipients)) for r in s.exec(select(OutboxMail))]
    if name.startswith("subject"):
        # answered: the injected text did reach the outbox and compose (checked by feed)
        assert rows == [("form_complete", [CLIENT])]
    else:  # a From whose name hides a line break is unreadable: nobody to answer
        assert mail.sender in (CLIENT, None) and rows in ([("form_complete", [CLIENT])], [])


# ---------------------------------------------------------------- 2c. forged From

@dataclass(frozen=True)
class Trick:
    header: str  # replaces the From line; may hold several header lines
    victims: tuple[str, ...]  # what the mail pretends to be, or redirects answers to: never answered
    real_from: str | None = ATTACKER  # the one usable address really in From, if any


def _b64word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


TRICKS = {
    "@ in an encoded word": Trick(f"From: =?utf-8?q?marie.dubois=40sambreville.be?= <{ATTACKER}>", (CLIENT,)),
    "@ in a quoted encoded word": Trick(f'From: "=?utf-8?q?marie.dubois=40sambreville.be?=" <{ATTACKER}>', (CLIENT,)),
    "whole mailbox in an encoded word": Trick(
        f"From: =?utf-8?q?Marie_Dubois_=3Cmarie.dubois=40sambreville.be=3E?= <{ATTACKER}>", (CLIENT,)),
    "only an encoded word": Trick("From: =?utf-8?q?marie.dubois=40sambreville.be?=", (CLIENT,), None),
    "NUL in an encoded word": Trick(f"From: =?utf-8?q?marie.dubois=40sambreville.be=00?= <{ATTACKER}>", (CLIENT,)),
    "NUL in an encoded local part (mailsploit)": Trick(
        f"From: {_b64word(CLIENT + chr(0))}=?utf-8?q?=00?={_b64word(CLIENT)}@evil.example", (CLIENT, "=?"), None),
    "encoded word before the victim's address": Trick(f"From: =?utf-8?q?=00?={CLIENT}", (CLIENT, "=?"), None),
    "raw NUL before the real address": Trick(f"From: {CLIENT}\x00<{ATTACKER}>", (CLIENT,)),
    "two From addresses": Trick(f"From: {CLIENT}, {ATTACKER}", (CLIENT, ATTACKER), None),
    "two From addresses, attacker first": Trick(f"From: {ATTACKER}, {CLIENT}", (CLIENT, ATTACKER), None),
    "two From headers": Trick(f"From: {CLIENT}\nFrom: {ATTACKER}", (CLIENT, ATTACKER), None),
    "two From headers, attacker first": Trick(f"From: {ATTACKER}\nFrom: {CLIENT}", (CLIENT, ATTACKER), None),
    "an unusable address before the victim's": Trick(f'From: "attacker"@evil.example, <{CLIENT}>', (CLIENT, "evil"), None),
    "an unusable address after the victim's": Trick(f'From: <{CLIENT}>, "x y"@evil.example', (CLIENT, "evil"), None),
    "the victim's address as a bare name": Trick(f"From: {CLIENT} <{ATTACKER}>", (CLIENT,)),
    "the victim's address in a comment": Trick(f"From: {ATTACKER} ({CLIENT})", (CLIENT,)),
    "the victim's address in angle brackets in the name": Trick(f'From: "Marie <{CLIENT}>" <{ATTACKER}>', (CLIENT,)),
    "a source route": Trick(f"From: <@sambreville.be:{ATTACKER}>", (CLIENT,)),
    "a group holding the victim": Trick(f"From: Marie: {CLIENT};, {ATTACKER}", (CLIENT, ATTACKER), None),
    "Reply-To elsewhere": Trick(f"From: {CLIENT}\nReply-To: {ATTACKER}", (ATTACKER,), CLIENT),
    "Sender differs from From": Trick(f"From: {CLIENT}\nSender: {ATTACKER}", (ATTACKER,), CLIENT),
    "Reply-To and Sender name the victim": Trick(f"From: {ATTACKER}\nReply-To: {CLIENT}\nSender: {CLIENT}", (CLIENT,)),
    "a staff address as the name": Trick(f'From: "{WL_STAFF}" <{ATTACKER}>', ()),
    "a staff address in an encoded word": Trick(
        f"From: =?utf-8?q?{WL_STAFF.replace('@', '=40')}?= <{ATTACKER}>", ()),
    "a look-alike domain": Trick("From: marie.dubois@s\u0430mbreville.be", (CLIENT,), "marie.dubois@s\u0430mbreville.be"),
    "Return-Path names the victim": Trick(f"From: {ATTACKER}\nReturn-Path: <{CLIENT}>", (CLIENT,)),
}


def trick_mail(trick: Trick, subject: str, mid: str) -> bytes:
    raw = form_mail_bytes(sender="placeholder@trick.invalid", subject=subject, mid=mid, at=LATER)
    line = b"From: placeholder@trick.invalid"
    assert raw.count(line) == 1
    return raw.replace(line, trick.header.encode())


@pytest.fixture(scope="module")
def victim_dossier(tmp_path_factory) -> tuple[Path, Path]:
    """Stores in which the victim's form opened EPAY-2027-0001 and was answered."""
    pipe = Pipeline(tmp_path_factory.mktemp("victim"))
    fed = pipe.feed(form_mail_bytes(), mail_from=CLIENT)
    assert fed.outcome.dossier == "EPAY-2027-0001"
    with Session(pipe.timed.engine) as s:
        assert [(r.purpose, r.recipients) for r in s.exec(select(OutboxMail))] == [("form_complete", f'["{CLIENT}"]')]
    return pipe.save()


@pytest.mark.parametrize("name", sorted(TRICKS))
def test_forged_from_in_the_victims_dossier(tmp_path, victim_dossier, name):
    """The victim's dossier is open and she is linked to it; the forged mail carries a new order
    form in her thread. Nothing goes to her or to the attacker (a stranger to the dossier): at
    most a note to staff. Only when From is the victim herself (Reply-To, Sender) may she be
    answered."""
    trick = TRICKS[name]
    pipe = Pipeline(tmp_path, victim_dossier)
    forged = trick.victims + ((trick.real_from,) if trick.real_from not in (None, CLIENT) else ())
    fed = pipe.feed(trick_mail(trick, f"RE: [EPAY-2027-0001] {SUBJECT}", "<trick@evil.example>"),
                    at=LATER, forged=forged, mail_from=ATTACKER)
    u = fed.outcome.understanding
    assert u.staff_party is None and u.kind != "staff"
    assert u.mail.sender is None or plain_address(u.mail.sender)


@pytest.mark.parametrize("name", sorted(TRICKS))
def test_forged_from_as_a_new_client(pipe, name):
    """No dossier yet: the forged mail opens one. The bot may answer the address really in From
    (it opened its own dossier); never an address the mail pretends to be or redirects to."""
    trick = TRICKS[name]
    fed = pipe.feed(trick_mail(trick, SUBJECT, "<trick@evil.example>"), at=LATER, forged=trick.victims,
                    mail_from=ATTACKER)
    u = fed.outcome.understanding
    assert u.staff_party is None and u.kind != "staff"


def test_a_stranger_naming_himself_in_the_form_is_not_answered(tmp_path, victim_dossier):
    """Found here: a stranger's order form in the victim's thread, naming the stranger as its
    business contact, linked him while the mail was applied, and the answer with the dossier's
    details went to him at once. Now whoever was not linked when the mail came gets nothing."""
    pipe = Pipeline(tmp_path, victim_dossier)
    form = fill_form("fr", complete_values("fr", business_contact_email=ATTACKER), rules=FORM_RULES)
    raw = Mail(LATER, ATTACKER, [WL], f"RE: [EPAY-2027-0001] {SUBJECT}", "Voici la version corrigée.",
               attachments=[("Bon de commande.xlsx", form, XLSX)], message_id="<self@evil.example>").to_bytes()
    fed = pipe.feed(raw, at=LATER, forged=[ATTACKER], mail_from=ATTACKER)  # authenticated: his own address
    assert fed.outcome.dossier == "EPAY-2027-0001" and fed.outcome.understanding.unlinked_sender
    with Session(pipe.timed.engine) as s:
        notes = s.exec(select(OutboxMail).where(OutboxMail.cause_pk == fed.outcome.message_pk)).all()
    assert [(n.purpose, json.loads(n.recipients)) for n in notes] == [("needs_human", [WL])]


# ---------------------------------------------------------------- 2d. bombs and broken encodings

def _nested_multipart(depth: int) -> bytes:
    opening, closing = b"", b""
    for i in range(depth):
        opening += b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1)
        closing = b"--B%d--\r\n" % i + closing
    leaf = b"--B%d\r\n" % depth + form_part() + b"\r\n--B%d--\r\n" % depth
    return head("Content-Type: multipart/mixed; boundary=B0") + b"\r\n" + opening + leaf + closing


def _nested_rfc822(depth: int) -> bytes:
    inner = head(b'Content-Type: multipart/mixed; boundary="b"', subject="leaf") + b"\r\n" + multipart_body(
        b"b", TEXT_PART, form_part())
    for i in range(depth):
        inner = head("Content-Type: message/rfc822", subject=f"Fwd {i}", mid=f"<fwd{i}@x.be>") + b"\r\n" + inner
    return inner


def _many_parts(count: int) -> bytes:
    pdf = b64(b"%PDF-1.4\n%%EOF\n")
    parts = [(b"Content-Type: application/pdf; name=scan%d.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" % i) + pdf
             for i in range(count)]
    return head("Content-Type: multipart/mixed; boundary=b") + b"\r\n" + multipart_body(b"b", TEXT_PART, *parts)


BOMBS = {
    "10,000 parts": lambda: _many_parts(10_000),
    "multipart nested 200 deep": lambda: _nested_multipart(200),
    "message/rfc822 nested 200 deep": lambda: _nested_rfc822(200),
    "1 MB subject": lambda: head(subject="BOSA M1036 " + "x" * 1_000_000) + b"\r\nBonjour\r\n",
    "1 MB encoded subject": lambda: head(subject="=?utf-8?q?" + "=C3=A9" * 170_000 + "?=") + b"\r\nBonjour\r\n",
    "1 MB From": lambda: head(sender=", ".join(f"x{i}@evil.example" for i in range(60_000))) + b"\r\nBonjour\r\n",
    "100,000 headers": lambda: head(*(f"X-Header-{i}: value {i}" for i in range(100_000))) + b"\r\nBonjour\r\n",
    "100,000 Received headers": lambda: head(*["Received: from a (b [192.0.2.1]) by c; Mon, 1 Mar 2027 09:00:00 +0100"]
                                              * 100_000) + b"\r\nBonjour\r\n",
    "100,000 folded lines in one header": lambda: head("X-Folded: " + "a\r\n " * 100_000) + b"\r\nBonjour\r\n",
    "100,000 References": lambda: head("References: " + " ".join(f"<r{i}@x.be>" for i in range(100_000)))
    + b"\r\nBonjour\r\n",
    "invalid charsets everywhere": lambda: head(
        b'Content-Type: multipart/mixed; boundary="b"', sender=f"=?x-unknown?q?Andr=E9?= <{CLIENT}>",
        subject="=?x-unknown?b?w6k=?= =?utf-7?q?+AGkAbgB2AGEAbABpAGQ-?= =?idna?q?=FF?= =??q?x?= =?utf-8?x?y?=")
    + b"\r\n" + multipart_body(
        b"b", b'Content-Type: text/plain; charset="x-unknown"\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n',
        b'Content-Type: text/plain; charset="idna"\r\n\r\n\xff\xfe\r\n',
        b'Content-Type: text/plain; charset="utf-8\x00"\r\n\r\nx\r\n',
        b'Content-Type: text/html; charset="rot13"\r\n\r\n<p>x</p>\r\n',
        form_part('=?x-unknown?q?Bon_de_commande=E9?=.xlsx')),
    "invalid base64 everywhere": lambda: head(b'Content-Type: multipart/mixed; boundary="b"', subject="=?utf-8?b?!!!?=")
    + b"\r\n" + multipart_body(
        b"b", b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!QmZ=*=\r\n",
        b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"=" * 5000,
        b"Content-Type: application/pdf; name=b.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJ\r\n",
        form_part().replace(b"\r\nUEsD", b"\r\nU*E@sD", 1)[:-40]),
    "10 MB of one base64 line": lambda: head(b'Content-Type: multipart/mixed; boundary="b"') + b"\r\n" + multipart_body(
        b"b", TEXT_PART, b"Content-Type: application/octet-stream; name=long.bin\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.b64encode(bytes(7_500_000))),
    "10,000,000 empty lines": lambda: head() + b"\r\n" + b"\n" * 10_000_000,
    "uuencoded bomb": lambda: head("Content-Transfer-Encoding: x-uuencode") + b"\r\nbegin 644 a.xlsx\r\n"
    + b"M" + b"A" * 60 + b"\r\n" + (b"M" + b"!" * 60 + b"\r\n") * 50_000 + b"end\r\n",
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_bomb(pipe, name):
    raw = BOMBS[name]()
    pipe.feed(raw, forged=["evil.example"])


@pytest.mark.slow
def test_a_pdf_without_line_breaks_at_the_text_reading_limit(pipe):
    """pypdf looks for %%EOF backwards one byte at a time in Python: ~1 s for the 8 MB that
    documents.toml lets it read (pdf_text_max_bytes), ten times that when traced."""
    pdf = b"%PDF-1.4 " + bytes(7_999_000)
    raw = head(b'Content-Type: multipart/mixed; boundary="b"') + b"\r\n" + multipart_body(
        b"b", TEXT_PART, b"Content-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64(pdf))
    pipe.feed(raw)


def test_a_form_that_lost_bytes_before_its_central_directory(pipe):
    """Found by the mutations below: zipfile raised ValueError ("negative seek value") out of
    check_form when bytes were missing inside an .xlsx; now the client is told it is damaged."""
    damaged = FORM[:200] + FORM[203:]
    raw = head(b'Content-Type: multipart/mixed; boundary="b"') + b"\r\n" + multipart_body(
        b"b", TEXT_PART, form_part(data=damaged))
    pipe.feed(raw, mail_from=CLIENT)
    with Session(pipe.timed.engine) as s:
        [row] = s.exec(select(OutboxMail)).all()
    assert row.purpose == "form_missing" and json.loads(row.detail)["problems"] == [["form", "unreadable"]]


def _fifty_megabytes(file_size: int, width: int = 76, junk_every: int = 0) -> tuple[bytes, bytes]:
    """A mail whose attachment holds `file_size` bytes, in base64 lines of `width` characters
    (0: one line), with a line that is not base64 after every `junk_every` lines."""
    data = hashlib.sha256(b"seed").digest() * (file_size // 32)
    encoded = base64.b64encode(data)
    lines = [encoded[i:i + width] for i in range(0, len(encoded), width)] if width else [encoded]
    if junk_every:
        lines = [line for i in range(0, len(lines), junk_every) for line in (*lines[i:i + junk_every], b"*")]
    part = (b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n") + b"\r\n".join(lines) + b"\r\n"
    return head("Content-Type: multipart/mixed; boundary=b") + b"\r\n" + multipart_body(b"b", TEXT_PART, part), data


@pytest.mark.slow
def test_fifty_megabyte_attachment(pipe):
    """50 MB of file: a 67 MB mail, over the message limit: recorded from its headers."""
    raw, _ = _fifty_megabytes(50_000_000)
    assert len(raw) > 60_000_000
    fed = pipe.feed(raw, peak_limit=BIG_PEAK_BYTES)
    assert "message over size limit: headers only" in fed.outcome.understanding.mail.defects


@pytest.mark.slow
def test_fifty_megabyte_mail(pipe):
    """A 50 MB mail (37 MB of file): parsed whole, the file hashed in chunks and not kept."""
    raw, data = _fifty_megabytes(37_000_000)
    assert 49_000_000 < len(raw) < 60_000_000
    fed = pipe.feed(raw, peak_limit=BIG_PEAK_BYTES)
    [att] = fed.outcome.understanding.mail.attachments
    assert att.size == len(data) and att.sha256 == hashlib.sha256(data).hexdigest() and att.data == b""


@pytest.mark.slow
@pytest.mark.parametrize("width, junk_every", [(1000, 0), (0, 0), (76, 63)],
                         ids=["1,000-character lines", "one line", "a line not base64 after every 63"])
def test_fifty_megabyte_mail_with_odd_base64(pipe, width, junk_every):
    """Found here: base64 in lines over 998 characters was handed whole to the stdlib parser,
    which costs ~10x in memory (400-550 MB for these mails), and base64 broken every 64th
    line cost 5 s of regular expression backtracking."""
    raw, data = _fifty_megabytes(37_000_000, width, junk_every)
    assert 49_000_000 < len(raw) < 60_000_000
    fed = pipe.feed(raw, peak_limit=BIG_PEAK_BYTES)
    mail = fed.outcome.understanding.mail
    [att] = mail.attachments
    if junk_every:  # runs of 63 lines are too short to set aside: the line limit cuts the file
        assert "too many lines: truncated" in mail.defects and att.size < len(data)
    else:
        assert att.size == len(data) and att.sha256 == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- 3. properties

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_clock = itertools.count()


def next_at() -> dt.datetime:
    """An hour later for each example: the per-day answer limits do not silence them all."""
    return AT + dt.timedelta(hours=next(_clock))


@pytest.fixture(scope="module")
def shared_pipe(tmp_path_factory, victim_dossier) -> Pipeline:
    """One store across all the examples of a property: later mails meet earlier dossiers
    (the victim's EPAY-2027-0001 first)."""
    return Pipeline(tmp_path_factory.mktemp("fuzz"), victim_dossier)


# arbitrary bytes

@fuzz(100)
@given(raw=st.binary(max_size=4000))
def test_arbitrary_bytes(shared_pipe, raw):
    shared_pipe.feed(raw, at=next_at())


@pytest.mark.slow
@fuzz(2000)
@given(raw=st.binary(max_size=20_000))
def test_arbitrary_bytes_long_run(shared_pipe, raw):
    shared_pipe.feed(raw, at=next_at())


# structured: random headers and parts

HEADER_NAMES = ["From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To",
                "References", "Return-Path", "Auto-Submitted", "Precedence", "List-Id", "X-Failed-Recipients",
                "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Delivered-To",
                "X-Auto-Response-Suppress", "from", "FROM ", "Subject\t", "X-Odd"]
ODD_VALUES = [
    "", " ", CLIENT, f"Marie Dubois <{CLIENT}>", ATTACKER, WL, BOSA, WL_STAFF, f"{CLIENT}, {ATTACKER}",
    f"=?utf-8?q?{CLIENT.replace('@', '=40')}?= <{ATTACKER}>", "=?utf-8?q?=00?=", "=?utf-8?b?AA==?=",
    "=?x-unknown?q?=E9?=", "=?utf-8?q?a=0D=0ABcc:_x=40evil.example?=", "=?utf-8?b?!!?=", '"a"@evil.example',
    "undisclosed-recipients:;", "<>", "<a@b>", "<m1@sambreville.be>", "<wl-1@worldline.localhost>",
    SUBJECT, "RE: [EPAY-2027-0001] " + SUBJECT, "Fwd: RE: [EPAY-2099-9999] x", "Automatisch antwoord: afwezig",
    "Mon, 1 Mar 2027 09:00:00 +0100", "Mon, 32 Foo 99999 99:99:99 +9999", "auto-replied", "no", "bulk",
    "multipart/mixed; boundary=b", "multipart/mixed", "multipart/alternative; boundary=\"b\"",
    "multipart/report; report-type=delivery-status; boundary=b", "message/rfc822", "message/delivery-status",
    "text/plain; charset=x-unknown", "text/html; charset=utf-8", f"{XLSX}; name=\"Bon de commande.xlsx\"",
    "application/ms-tnef; name=winmail.dat", "base64", "quoted-printable", "x-uuencode", "8bit", "bogus",
    "attachment; filename=\"Bon de commande.xlsx\"", "attachment; filename*=utf-8''%E9%00.pdf",
    "inline; filename=\"../../etc/passwd\"", "attachment; filename=\"scan\u202efdp.exe\"", "1.0", "All",
]
header_value = st.one_of(
    st.sampled_from(ODD_VALUES).map(str.encode),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
)
header_line = st.tuples(st.sampled_from(HEADER_NAMES).map(str.encode), header_value).map(lambda t: t[0] + b": " + t[1])
CTE = st.sampled_from([None, "base64", "quoted-printable", "7bit", "8bit", "x-uuencode", "bogus"])
FILES = {"the order form": FORM, "a scan": scan_pdf(size=2_000), "a photo": b"\xff\xd8\xff\xe1" + bytes(3000),
         "a TNEF signature": b"\x78\x9f\x3e\x22" + bytes(40)}


def _file(name: str) -> bytes:
    return FILES[name]


PAYLOADS = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                     st.sampled_from(sorted(FILES)).map(_file))


def _leaf(ctype: bytes, headers: list[bytes], payload: bytes, cte: str | None) -> bytes:
    if cte == "base64":
        payload = b64(payload)
    elif cte == "quoted-printable":
        import quopri
        payload = quopri.encodestring(payload)
    lines = [b"Content-Type: " + ctype, *headers] + ([f"Content-Transfer-Encoding: {cte}".encode()] if cte else [])
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _multi(subtype: bytes, boundary: bytes, children: list[bytes], close: bool, preamble: bytes) -> bytes:
    return (b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n' + preamble + b"\r\n"
            + multipart_body(boundary, *children, close=close))


def _rfc822(headers: list[bytes], inner: bytes) -> bytes:
    return b"Content-Type: message/rfc822\r\n\r\n" + b"\r\n".join(headers) + (b"\r\n" if headers else b"") + inner


leaf_part = st.builds(
    _leaf, st.sampled_from([b"text/plain", b"text/html", b"text/plain; charset=utf-8", XLSX.encode(),
                            b"application/pdf; name=scan.pdf", b"image/jpeg; name=IMG_2041.jpg",
                            b"application/octet-stream", b"application/ms-tnef", b"message/delivery-status",
                            b"text/calendar", b"", b"x/y; name=\"=?utf-8?q?Bon_de_commande?=.xlsx\""]),
    st.lists(header_line, max_size=3), PAYLOADS, CTE)
any_part = st.recursive(
    leaf_part,
    lambda children: st.one_of(
        st.builds(_multi, st.sampled_from([b"mixed", b"alternative", b"related", b"report", b"signed"]),
                  st.sampled_from([b"b", b"b1", b"=_x", b"--", b"a b", b""]), st.lists(children, max_size=4),
                  st.booleans(), st.binary(max_size=20)),
        st.builds(_rfc822, st.lists(header_line, max_size=4), children)),
    max_leaves=8)


@st.composite
def structured_mail(draw) -> bytes:
    headers = draw(st.lists(header_line, max_size=12))
    if draw(st.booleans()):  # most mails have a sender
        headers.insert(draw(st.integers(0, len(headers))), b"From: " + draw(header_value))
    raw = b"\r\n".join(headers) + b"\r\n" + draw(any_part)
    return raw.replace(b"\r\n", b"\n") if draw(st.booleans()) else raw


@fuzz(100)
@given(raw=structured_mail(), mailbox=st.sampled_from(["worldline", "bosa"]))
def test_structured_mail(shared_pipe, raw, mailbox):
    shared_pipe.feed(raw, at=next_at(), mailbox=mailbox)


@pytest.mark.slow
@fuzz(1500)
@given(raw=structured_mail(), mailbox=st.sampled_from(["worldline", "bosa"]))
def test_structured_mail_long_run(shared_pipe, raw, mailbox):
    shared_pipe.feed(raw, at=next_at(), mailbox=mailbox)


# mutations of the season's realistic mails

SEASON = [m.to_bytes() for m in season(SETTINGS)]
SNIPPETS = [b"\r\n", b"\n\n", b"\r\n\r\n", b"\x00", b"--", b"=", b";", b'"', b"<", b">", b"@", b",", b":", b" ",
            b"=?utf-8?q?=0D=0A?=", f"From: {ATTACKER}\n".encode(), f"Reply-To: {ATTACKER}\n".encode(),
            b"Content-Type: multipart/mixed; boundary=b\n", b"Content-Transfer-Encoding: base64\n",
            b"Content-Type: message/rfc822\n\n", b"\xff\xfe", b"\xc3", b"RE: [EPAY-2027-0001] ", b"Auto-Submitted: no\n"]
edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 60),
                           st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=12))), min_size=1, max_size=8)


def mutate(raw: bytes, changes: list[tuple[float, int, bytes]]) -> bytes:
    data = bytearray(raw)
    for where, cut, insert in changes:
        at = int(where * len(data))
        data[at:at + cut] = insert
    return bytes(data)


@fuzz(60)
@given(index=st.integers(0, len(SEASON) - 1), changes=edits)
def test_mutated_season_mail(shared_pipe, index, changes):
    shared_pipe.feed(mutate(SEASON[index], changes), at=next_at())


@pytest.mark.slow
@fuzz(800)
@given(index=st.integers(0, len(SEASON) - 1), changes=edits, mailbox=st.sampled_from(["worldline", "bosa"]))
def test_mutated_season_mail_long_run(shared_pipe, index, changes, mailbox):
    shared_pipe.feed(mutate(SEASON[index], changes), at=next_at(), mailbox=mailbox)
