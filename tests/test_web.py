"""The staff page (mailbot/web) on a real SQLite store filled by the real pipeline: nothing
without a signed-in staff member, CSRF on every action, the security headers, each team seeing
what its mailbox saw, the list's filters agreeing with the dossier's state, each action done and
recorded with who and when, FR/NL/EN, and the digest's links to the pages.

The app is driven through Starlette's TestClient (in process); the sign-in is the sandbox's demo
user. The real OpenID Connect sign-in is tested in test_web_signin.py, the real browser in
test_web_browser.py, the daemon beside the page in test_web_daemon.py.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re

import pytest
from sqlmodel import Session, col, select
from starlette.routing import Route
from starlette.testclient import TestClient

from mailbot.answers.digest import digest_draft
from mailbot.answers.render import Renderer
from mailbot.config import Imap, Settings, load_settings
from mailbot.context import Context
from mailbot.dossiers.state import stage, waiting_for
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.outbox import OutboxState
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import (
    Contact,
    Deadline,
    Dossier,
    Event,
    FolderState,
    Message,
    OutboxMail,
    PendingChange,
    Sighting,
    StaffAction,
)
from mailbot.web.app import create_app
from mailbot.web.dossier_list import AWAITED, STAGES, ListFilter, dossier_list
from mailbot.web.scope import Scope
from mailbot.web.security import HEADERS

FORM_RULES = load_rules()
SETTINGS = load_settings(SANDBOX_CONFIG)  # [web] sign_in = "demo"
WL = SETTINGS.mailboxes["worldline"].address
BOSA = SETTINGS.mailboxes["bosa"].address
MORAD = "morad.staff@worldline.localhost"  # Worldline staff
MANAGER = "service.manager@bosa.localhost"  # BOSA staff
CLIENT = "marie.dubois@sambreville.be"
OTHER = "jan.peeters@zaventem.be"
AT = brussels(2027, 3, 1, 9)  # a Monday
NOW = brussels(2027, 3, 9, 10)  # past the 3 business days of the prevalidation: late
NEW_IBAN = "BE62 5100 0754 7061"


def form_mail(n, sender=CLIENT, at=AT, project="E-guichet Stadsloket", subject=None, **changes):
    values = complete_values("fr", project_name=project, **changes)
    form = fill_form("fr", values, rules=FORM_RULES)
    return Mail(at, sender, [WL], subject or f"BOSA M1036 - Bon de commande – {project}",
                "Bonjour, ci-joint notre bon de commande.", cc=[BOSA],
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<w{n}@{sender.split('@')[1]}>")


def feed(ctx, mail, *mailboxes, at=None):
    raw = mail.delivered()
    for box in mailboxes or ("worldline", "bosa"):
        outcome = handle(raw, Seen(box), at or mail.at, ctx)
        assert outcome.failed is None, outcome.failed


@pytest.fixture
def ctx(tmp_path):
    context = Context.load(SETTINGS, open_database(f"sqlite:///{tmp_path}/web.sqlite"), max_attempts=1)
    yield context
    context.engine.dispose()


@pytest.fixture
def world(ctx):
    """EPAY-2027-0001: Sambreville's complete form, seen by both mailboxes, its prevalidation
    late at NOW. EPAY-2027-0002: Zaventem's, sent to Worldline alone (BOSA never saw it)."""
    feed(ctx, form_mail(1))
    feed(ctx, form_mail(2, sender=OTHER, project="Parking Zaventem", legal_name="Gemeente Zaventem",
                        enterprise_number="0207.500.123", vat_number="BE 0207.500.123",
                        business_contact_email=OTHER), "worldline")
    return ctx


def on_imap(settings: Settings) -> Settings:
    """`settings` with both mailboxes on IMAP, their INBOX and Sent watched (on a loopback port no
    test connects to: the site only reads which folders are watched)."""
    boxes = {name: box.model_copy(update={"imap": Imap(host="127.0.0.1", port=9, user=name, security="plain")})
             for name, box in settings.mailboxes.items()}
    return settings.model_copy(update={"mailboxes": boxes})


def client(ctx, user=MORAD, *, sign_in=True, settings=SETTINGS, **web) -> TestClient:
    settings = settings.model_copy(update={"web": settings.web.model_copy(update={"demo_user": user, **web})})
    app = create_app(settings, ctx.engine, clock=lambda: NOW)
    browser = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False, headers={"accept-language": "en"})
    if sign_in:
        page = browser.get("/signin")
        assert page.status_code == 200
        done = browser.post("/signin/demo", data={"csrf": token(page.text), "next": "/"})
        assert done.status_code == 303 and done.headers["location"] == "/"
    return browser


def token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def post(browser, url, **data):
    """An action as the page's form sends it: with the session's CSRF token, back to `back`."""
    page = browser.get("/")
    assert page.status_code == 200
    return browser.post(url, data={"csrf": token(page.text), "back": data.pop("back", "/"), **data})


def flash(browser, back="/") -> str:
    found = re.search(r'<p class="flash (\w+)".*?<span class="detail">([^<]*)</span></p>', browser.get(back).text)
    return f"{found.group(1)}: {html.unescape(found.group(2))}" if found else ""


def dossier(ctx, reference) -> Dossier:
    with Session(ctx.engine) as s:
        return s.exec(select(Dossier).where(Dossier.reference == reference)).one()


def actions(ctx) -> list[StaffAction]:
    with Session(ctx.engine) as s:
        return list(s.exec(select(StaffAction).order_by(col(StaffAction.id))))


def prevalidation(ctx, reference="EPAY-2027-0001") -> Deadline:
    d = dossier(ctx, reference)
    with Session(ctx.engine) as s:
        return s.exec(select(Deadline).where(Deadline.dossier_id == d.id, Deadline.name == "prevalidation")).one()


def action_urls(ctx) -> list[str]:
    """Every POST route of the site but the sign-in's, with real identifiers."""
    with Session(ctx.engine) as s:
        pk = s.exec(select(Message.id)).first()
        box = s.exec(select(OutboxMail.id)).first()
    values = {"reference": "EPAY-2027-0001", "pk": str(pk), "id": str(box)}
    app = create_app(SETTINGS, ctx.engine)
    urls = []
    for route in app.routes:
        assert isinstance(route, Route)
        if "POST" in (route.methods or ()) and not route.path.startswith(("/signin", "/signout", "/language")):
            urls.append(re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], route.path))
    assert len(urls) == 6, urls  # mark, link, settle, release, handled, send-again
    return urls


def page_urls(ctx) -> list[str]:
    app = create_app(SETTINGS, ctx.engine)
    urls = [r.path.replace("{reference}", "EPAY-2027-0001") for r in app.routes
            if isinstance(r, Route) and "GET" in (r.methods or ()) and not r.path.startswith(("/signin", "/style"))]
    assert set(urls) == {"/", "/dossiers/EPAY-2027-0001", "/attention", "/queues"}, urls
    return urls


# --- nobody signed out sees or does anything -----------------------------------------------------

def test_no_page_without_a_signed_in_staff_member(world):
    browser = client(world, sign_in=False)
    for url in page_urls(world):
        answer = browser.get(url)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin?next="), url
        assert "EPAY-2027-0001" not in answer.text and "Sambreville" not in answer.text


def test_no_action_without_a_signed_in_staff_member(world):
    browser = client(world, sign_in=False)
    signin = browser.get("/signin")
    for url in action_urls(world):
        # even with the session's own CSRF token: signed out is signed out
        answer = browser.post(url, data={"csrf": token(signin.text), "step": "prevalidated",
                                         "address": "x@sambreville.be", "role": "colleague"})
        assert answer.status_code == 403, url
    assert actions(world) == [] and prevalidation(world).state == "open"


def test_someone_taken_off_the_staff_list_is_out_at_once(world):
    browser = client(world)
    assert browser.get("/").status_code == 200
    browser.app.state.settings = browser.app.state.site.settings = SETTINGS.model_copy(
        update={"web": SETTINGS.web.model_copy(update={"staff": {"worldline": ("someone.else@worldline.localhost",)}})})
    assert browser.get("/").status_code == 303


def test_every_action_checks_the_csrf_token(world):
    browser = client(world)
    for url in action_urls(world):
        for data in ({}, {"csrf": "forged"}):
            answer = browser.post(url, data={**data, "step": "prevalidated", "address": "x@sambreville.be"})
            assert answer.status_code == 403, (url, data)
    signout = browser.post("/signout", data={"csrf": "forged"})
    assert signout.status_code == 403
    assert actions(world) == [] and prevalidation(world).state == "open"
    assert browser.get("/").status_code == 200  # still signed in


def test_security_headers_on_every_answer(world):
    browser = client(world)
    for url in ["/", "/dossiers/EPAY-2027-0001", "/dossiers/EPAY-2099-0001", "/queues", "/style.css", "/nowhere"]:
        answer = browser.get(url)
        for name, value in HEADERS.items():
            if name == "cache-control" and url == "/style.css":
                continue  # the stylesheet may be cached: it holds no data
            assert answer.headers.get(name) == value, (url, name)
    signed_out = client(world, sign_in=False).get("/signin")
    assert signed_out.headers["content-security-policy"] == HEADERS["content-security-policy"]
    cookie = signed_out.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_the_session_cookie_is_https_only_behind_an_https_address(world):
    browser = client(world, sign_in=False, public_url="https://mailbot.example.org")
    answer = browser.get("/signin")
    assert "secure" in answer.headers["set-cookie"].lower()
    assert answer.headers["strict-transport-security"].startswith("max-age=")


# --- what each team sees -------------------------------------------------------------------------

def test_worldline_sees_every_dossier_its_mailbox_saw(world):
    page = client(world).get("/").text
    assert "EPAY-2027-0001" in page and "EPAY-2027-0002" in page


def test_bosa_sees_only_what_bosa_s_mailbox_saw(world):
    browser = client(world, MANAGER)
    page = browser.get("/").text
    assert "EPAY-2027-0001" in page and "EPAY-2027-0002" not in page and "Zaventem" not in page
    assert browser.get("/dossiers/EPAY-2027-0002").status_code == 404
    assert "Zaventem" not in browser.get("/dossiers/EPAY-2027-0002").text
    assert browser.get("/?q=zaventem").text.count("/dossiers/") == 0
    # nor act on it
    answer = post(browser, "/dossiers/EPAY-2027-0002/mark", step="prevalidated")
    assert answer.status_code == 303 and flash(browser) == "refused: no dossier EPAY-2027-0002"
    assert prevalidation(world, "EPAY-2027-0002").state == "open" and actions(world) == []


def test_a_dossier_page_shows_where_it_stands_and_why(world):
    page = client(world).get("/dossiers/EPAY-2027-0001").text
    assert "E-guichet Stadsloket" in page and "Ville de Sambreville" in page
    assert "prevalidation of the order form (Worldline)" in page  # the wait, in the shared words
    assert "2027-03-04" in page and "LATE" in page  # 3 business days from Monday 1 March
    assert CLIENT in page and "Bon de commande.xlsx" in page
    assert "answered: form_complete" in page  # the bot's decision on the client's mail
    assert "BOSA M1036 - Bon de commande" in page  # the bot's answer, in the timeline
    assert page.index("dossier opened") < page.index("deadline started")  # in order


# --- the list's filters --------------------------------------------------------------------------

def test_the_filters_in_sql_agree_with_the_dossier_state(ctx):
    """Every combination of the dossier's flags: the stage and the waits the SQL filters select
    are those dossiers/state.py gives each dossier."""
    flags = list(itertools.product(("none", "attempted", "incomplete", "complete"), *[(False, True)] * 5))
    at = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
    with Session(ctx.engine) as s:
        for n, (form, pre, conv, signed, idc, access) in enumerate(flags):
            d = Dossier(reference=f"EPAY-2027-{n:04d}", project_name=f"p{n}", project_key=f"p{n}", form_status=form,
                        prevalidated=pre, convention_received=conv, signed_form_received=signed,
                        id_copy_received=idc, access_sent=access, opened_at=at, updated_at=at)
            s.add(d)
            s.flush()
            m = Message(key=f"k{n}", content_hash=f"h{n}", received_at=at, dossier_id=d.id, status="processed")
            s.add(m)
            s.flush()
            s.add(Sighting(message_pk=m.id, mailbox="worldline", folder="INBOX", seen_at=at))
        s.commit()
        dossiers = s.exec(select(Dossier)).all()
        scope = Scope.of(("worldline",), SETTINGS)

        def listed(flt: ListFilter) -> set[str]:
            out: set[str] = set()
            for page in itertools.count(1):
                found = dossier_list(s, scope, flt.__class__(**{**flt.__dict__, "page": page}), at.date())
                out |= {r.reference for r in found.rows}
                if page >= found.pages:
                    return out

        for name in STAGES:
            assert listed(ListFilter(stage=name)) == {d.reference for d in dossiers if stage(d) == name}, name
        for party in AWAITED:
            expected = {d.reference for d in dossiers if any(w.party == party for w in waiting_for(d))}
            assert listed(ListFilter(awaited=party)) == expected, party
    assert len(flags) == 128


def test_late_due_today_and_search(world):
    browser = client(world)
    late = browser.get("/?late=1").text
    assert "EPAY-2027-0001" in late and "EPAY-2027-0002" in late  # both forms came on 1 March
    with Session(world.engine) as s:  # the second met by a person: no longer late
        dl = s.get(Deadline, prevalidation(world, "EPAY-2027-0002").id)
        dl.state = "met"
        s.add(dl)
        s.commit()
    late = browser.get("/?late=1").text
    assert "EPAY-2027-0001" in late and "EPAY-2027-0002" not in late
    assert re.findall(r'href="/dossiers/([^"]+)"', browser.get("/?due_today=1").text) == []
    for q, expected in (("stadsloket", "EPAY-2027-0001"), ("ZAVENTEM", "EPAY-2027-0002"),
                        (OTHER, "EPAY-2027-0002"), ("0207.500.123", "EPAY-2027-0002"), ("BE 0207 500 123", "EPAY-2027-0002"),
                        ("epay-2027-0001", "EPAY-2027-0001")):
        page = browser.get("/", params={"q": q}).text
        assert re.findall(r'href="/dossiers/([^"]+)"', page) == [expected], q


# --- the actions ---------------------------------------------------------------------------------

def test_mark_prevalidation_done_from_the_page(world):
    browser = client(world)
    answer = post(browser, "/dossiers/EPAY-2027-0001/mark", step="prevalidated", back="/dossiers/EPAY-2027-0001")
    assert answer.status_code == 303 and answer.headers["location"] == "/dossiers/EPAY-2027-0001"
    assert flash(browser, "/dossiers/EPAY-2027-0001").startswith("done: EPAY-2027-0001: prevalidated, marked by")
    dl = prevalidation(world)
    assert dl.state == "met" and dl.closed_at == NOW
    assert dossier(world, "EPAY-2027-0001").prevalidated
    with Session(world.engine) as s:
        events = s.exec(select(Event).where(Event.kind == "prevalidated")).all()
    assert [(e.at, e.detail) for e in events] == [(NOW, f"marked done by {MORAD}")]
    (done,) = actions(world)
    assert (done.who, done.action, done.at, done.dossier_id) == (MORAD, "prevalidated", NOW,
                                                                 dossier(world, "EPAY-2027-0001").id)
    assert "EPAY-2027-0001" not in browser.get("/?late=1").text
    page = browser.get("/dossiers/EPAY-2027-0001").text
    assert "signed order form (client)" in page and 'value="prevalidated"' not in page
    # twice is no harm: said, not redone
    post(browser, "/dossiers/EPAY-2027-0001/mark", step="prevalidated")
    assert flash(browser) == "done: already prevalidated" and prevalidation(world).closed_at == NOW


def test_confirm_and_reject_changed_payment_details(world):
    feed(world, form_mail(3, at=AT + dt.timedelta(days=1), settlement_iban=NEW_IBAN,
                          subject="RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket"))
    browser = client(world)
    page = browser.get("/dossiers/EPAY-2027-0001").text
    assert "wait for a person" in page and NEW_IBAN in page and "BE71 0961 2345 6769" in page
    assert re.findall(r'href="/dossiers/([^"]+)"', browser.get("/?needs_person=1").text) == ["EPAY-2027-0001"]
    post(browser, "/dossiers/EPAY-2027-0001/mark", step="confirm-changes")
    assert flash(browser).startswith("done: EPAY-2027-0001: changes to settlement_iban confirmed by " + MORAD)
    with Session(world.engine) as s:
        change = s.exec(select(PendingChange)).one()
    assert (change.state, change.decided_by, change.decided_at) == ("confirmed", MORAD, NOW)
    assert [a.action for a in actions(world)] == ["confirm-changes"]
    post(browser, "/dossiers/EPAY-2027-0001/mark", step="reject-changes")
    assert flash(browser) == "done: EPAY-2027-0001: no changed payment details or contacts to confirm"


def test_link_an_address_and_the_mail_it_sent_is_dealt_with(world):
    stranger = Mail(AT + dt.timedelta(days=2), "paul.leroy.sambreville@gmail.com", [WL],
                    "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket",
                    "Bonjour, où en est notre dossier ?", cc=[BOSA], message_id="<q1@sambreville.be>")
    feed(world, stranger)
    browser = client(world)
    assert "paul.leroy.sambreville@gmail.com" in browser.get("/attention").text
    post(browser, "/dossiers/EPAY-2027-0001/link", address="not an address", role="colleague")
    assert flash(browser).startswith("refused: 'not an address' is not an e-mail address")
    post(browser, "/dossiers/EPAY-2027-0001/link", address="  Paul.Leroy.Sambreville@Gmail.com ", role="colleague")
    assert flash(browser) == f"done: EPAY-2027-0001: paul.leroy.sambreville@gmail.com linked as colleague by {MORAD}"
    with Session(world.engine) as s:
        contact = s.exec(select(Contact).where(Contact.email == "paul.leroy.sambreville@gmail.com")).one()
    assert contact.linked and contact.role == "colleague"
    assert "paul.leroy.sambreville@gmail.com" not in browser.get("/attention").text
    assert {a.action for a in actions(world)} == {"linked_address", "handled"}


def test_settle_two_dossiers_claiming_one_project(world):
    # Zaventem names Sambreville's project: filed apart (nobody takes another's dossier by its name)
    feed(world, form_mail(4, sender=OTHER, project="E-guichet Stadsloket", legal_name="Gemeente Zaventem",
                          business_contact_email=OTHER, at=AT + dt.timedelta(days=1)))
    browser = client(world)
    page = browser.get("/dossiers/EPAY-2027-0001").text
    assert "EPAY-2027-0003" in page and "/dossiers/EPAY-2027-0001/settle" in page
    post(browser, "/dossiers/EPAY-2027-0001/settle")
    assert flash(browser) == "done: EPAY-2027-0001 is the project's dossier; set apart: EPAY-2027-0003"
    assert dossier(world, "EPAY-2027-0003").project_key != dossier(world, "EPAY-2027-0001").project_key
    assert "/dossiers/EPAY-2027-0001/settle" not in browser.get("/dossiers/EPAY-2027-0001").text
    post(browser, "/dossiers/EPAY-2027-0001/settle")
    assert flash(browser) == "refused: EPAY-2027-0001: no other dossier claims its project"


def quarantine_on_the_server(ctx, uidvalidity_now=7, inbox_watched=True) -> int:
    """The client's first mail, failed and set aside, seen at UID 4 of Worldline's INBOX under
    UIDVALIDITY 7; the INBOX's watcher at UID 9 under `uidvalidity_now`."""
    with Session(ctx.engine) as s:
        msg = s.exec(select(Message).where(Message.sender == CLIENT)).first()
        msg.status, msg.status_reason, msg.attempts = "quarantined", "ValueError: broken", 3
        s.add(msg)
        for sighting in s.exec(select(Sighting).where(Sighting.message_pk == msg.id)):
            s.delete(sighting)
        s.add(Sighting(message_pk=msg.id, mailbox="worldline", folder="INBOX" if inbox_watched else "Archive",
                       uidvalidity=7, uid=4, seen_at=AT))
        s.add(FolderState(mailbox="worldline", folder="INBOX" if inbox_watched else "Archive",
                          uidvalidity=uidvalidity_now, last_uid=9))
        s.commit()
        return msg.id


def test_release_a_quarantined_mail_and_mark_a_mail_dealt_with(world):
    pk = quarantine_on_the_server(world)
    browser = client(world, settings=on_imap(SETTINGS))
    assert "ValueError: broken" in browser.get("/queues").text
    post(browser, f"/mail/{pk}/release", back="/queues")
    assert flash(browser, "/queues").startswith(f"done: mail {pk} released")
    with Session(world.engine) as s:
        msg = s.get(Message, pk)
    assert (msg.status, msg.attempts) == ("received", 0) and f"released by {MORAD}" in msg.status_reason
    post(browser, f"/mail/{pk}/release")
    assert flash(browser) == f"refused: mail {pk} is not in the quarantine"
    # a mail that needs a person, dealt with
    feed(world, Mail(AT + dt.timedelta(days=2), CLIENT, [WL],
                     "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket",
                     "Merci. Quid de la référence ENG-7731 ?", cc=[BOSA], message_id="<q2@sambreville.be>"))
    assert "ENG-7731" not in browser.get("/attention").text  # the body is never shown
    assert "RE: [EPAY-2027-0001]" in browser.get("/attention").text
    with Session(world.engine) as s:
        question = s.exec(select(Message).where(Message.message_id == "q2@sambreville.be")).one()
    post(browser, f"/mail/{question.id}/handled", note="answered by phone", back="/attention")
    assert "q2@sambreville.be" not in browser.get("/attention").text
    assert [a.action for a in actions(world)] == ["released", "handled"]
    assert actions(world)[1].detail == "answered by phone"


@pytest.mark.parametrize("uidvalidity_now, inbox_watched", [(8, True), (7, False)],
                         ids=["folder-renumbered", "folder-no-longer-watched"])
def test_a_quarantined_mail_no_watcher_can_fetch_is_not_released(world, uidvalidity_now, inbox_watched):
    """The bot keeps no copy of a mail: with no watched folder still holding it, a release would
    leave it waiting for ever. The page says so instead of offering it, and refuses it."""
    pk = quarantine_on_the_server(world, uidvalidity_now, inbox_watched)
    browser = client(world, settings=on_imap(SETTINGS))
    queues = browser.get("/queues").text
    assert "ValueError: broken" in queues and f'action="/mail/{pk}/release"' not in queues
    assert "No longer in a mail folder the bot watches: it cannot be taken again." in queues
    post(browser, f"/mail/{pk}/release", back="/queues")
    assert flash(browser, "/queues").startswith(f"refused: mail {pk} cannot be taken again: no folder the bot watches")
    with Session(world.engine) as s:
        msg = s.get(Message, pk)
    assert (msg.status, msg.status_reason) == ("quarantined", "ValueError: broken")
    assert actions(world) == []
    assert f"/mail/{pk}/handled" in browser.get("/attention").text  # still a person's to deal with


def test_send_a_failed_answer_again(world):
    with Session(world.engine) as s:
        row = s.exec(select(OutboxMail).where(OutboxMail.purpose == "form_complete")).first()
        row.state, row.last_error, row.attempts = OutboxState.FAILED.value, "550 no such user", 1
        s.add(row)
        s.commit()
        row_id = row.id
    browser = client(world)
    assert "550 no such user" in browser.get("/queues").text
    post(browser, f"/outbox/{row_id}/send-again", back="/queues")
    with Session(world.engine) as s:
        row = s.get(OutboxMail, row_id)
    assert (row.state, row.attempts, row.last_error, row.not_before) == ("pending", 0, "", NOW)
    post(browser, f"/outbox/{row_id}/send-again")
    assert flash(browser) == f"refused: outbox mail {row_id}: pending, not failed: nothing to send again"
    assert [(a.action, a.detail, a.outbox_id) for a in actions(world)] == [("sent_again", "550 no such user", row_id)]


# --- languages -----------------------------------------------------------------------------------

@pytest.mark.parametrize("lang, words", [("fr", ["En attente de", "bon de commande complet", "Étapes confirmées"]),
                                         ("nl", ["Wacht op", "bestelbon volledig", "Voorvalidatie als gedaan"]),
                                         ("en", ["Waiting for", "order form complete", "Mark prevalidation done"])])
def test_the_page_in_the_language_chosen(world, lang, words):
    browser = client(world)
    answer = browser.post("/language", data={"csrf": token(browser.get("/").text), "lang": lang,
                                             "back": "/dossiers/EPAY-2027-0001"})
    assert answer.headers["location"] == "/dossiers/EPAY-2027-0001"
    page = browser.get("/dossiers/EPAY-2027-0001").text + browser.get("/").text
    assert f'<html lang="{lang}">' in page
    for word in words:
        assert word in page, word


def test_the_language_follows_the_browser_until_chosen(world):
    browser = client(world)
    assert '<html lang="nl">' in browser.get("/", headers={"accept-language": "nl-BE,nl;q=0.9"}).text
    assert '<html lang="fr">' in browser.get("/", headers={"accept-language": "de-DE"}).text  # the team's


# --- the digest links each dossier to its page ---------------------------------------------------

def test_the_digest_links_each_dossier_when_the_site_has_a_public_address(world):
    renderer = Renderer.for_settings(SETTINGS)
    with Session(world.engine) as s:
        plain = digest_draft(s, "worldline", NOW, SETTINGS, world.calendars["public"], renderer)
        linked_settings = SETTINGS.model_copy(update={"web": SETTINGS.web.model_copy(
            update={"public_url": "https://mailbot.example.org"})})
        linked = digest_draft(s, "worldline", NOW, linked_settings, world.calendars["public"], renderer)
    assert "https://mailbot.example.org" not in plain.rendered.html + plain.rendered.text
    assert '<a href="https://mailbot.example.org/dossiers/EPAY-2027-0001">EPAY-2027-0001</a>' in linked.rendered.html
    assert "EPAY-2027-0001 <https://mailbot.example.org/dossiers/EPAY-2027-0001>" in linked.rendered.text


# --- the configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("web, error", [
    ({"sign_in": "demo", "host": "0.0.0.0"}, "the demo sign-in is for the sandbox"),  # noqa: S104 - refused: the point
    ({"sign_in": "demo", "public_url": "https://mailbot.example.org"}, "the demo sign-in is for the sandbox"),
    ({"serve": True, "sign_in": "oidc"}, 'sign_in = "oidc" needs a [web.oidc] section'),
    ({"public_url": "mailbot.example.org"}, "web.public_url must be an http(s):// address"),
    ({"oidc": {"metadata_url": "http://login.example.org/.well-known/openid-configuration", "client_id": "x"}},
     "web.oidc.metadata_url must be an https:// address"),
    ({"staff": {"finance": ["a@worldline.com"]}}, "web.staff names no configured mailbox"),
])
def test_a_web_section_that_cannot_work_is_refused_at_start(web, error):
    from mailbot.config import parse_settings
    from mailbot.errors import ConfigError

    data = {"mailboxes": {"worldline": {"address": "ecom@worldline.com"}, "bosa": {"address": "epay@bosa.fgov.be"}},
            "web": web}
    with pytest.raises(ConfigError, match=re.escape(error)):
        parse_settings(data)
