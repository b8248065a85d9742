"""Sign-in to the staff page (mailbot/web/signin.py): a real OpenID Connect provider on 127.0.0.1
(tests/oidc_provider.py), a small app served by uvicorn with the sign-in routes and one page that
says who is signed in, and httpx following the redirects between the two as a browser does."""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

import httpx
import pytest
from asgi_server import serving
from oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from sqlalchemy import create_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mailbot.answers.reasons import load_reasons
from mailbot.clock import system_clock
from mailbot.config import Settings, parse_settings
from mailbot.resources import SANDBOX_CONFIG
from mailbot.web.render import Site as WebSite, environment
from mailbot.web.security import csrf_token
from mailbot.web.signin import Refusal, current_staff, safe_next, signin_routes

MORAD = "morad.staff@worldline.localhost"  # on Worldline's list in the sandbox configuration
SERVICE_MANAGER = "service.manager@bosa.localhost"  # on BOSA's
SECRET_ENV = "MAILBOT_TEST_OIDC_SECRET"


def sandbox_data() -> dict[str, Any]:
    with SANDBOX_CONFIG.open("rb") as file:
        return tomllib.load(file)


def oidc_settings(metadata_url: str, **web: Any) -> Settings:
    data = sandbox_data()
    data["web"] = {"sign_in": "oidc", "oidc": {"metadata_url": metadata_url, "client_id": CLIENT_ID,
                                               "client_secret_env": SECRET_ENV}, **web}
    return parse_settings(data)


def with_web(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update=changes)})


async def whoami(request: Request) -> JSONResponse:
    """The protected page of the test app: who is signed in, or 401."""
    staff = current_staff(request)
    if staff is None:
        return JSONResponse({"signed_in": False}, status_code=401)
    return JSONResponse({"email": staff.email, "name": staff.name, "teams": list(staff.teams),
                         "at": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
                         "csrf": csrf_token(request)})


def make_app(settings: Settings) -> Starlette:
    app = Starlette(routes=[*signin_routes(settings), Route("/", whoami), Route("/app/{path:path}", whoami)],
                    middleware=[Middleware(SessionMiddleware, secret_key=secrets.token_urlsafe(32))])
    app.state.settings = settings
    # The staff site's rendering, for the sign-in's own pages (in the reader's language).
    app.state.site = WebSite(settings, create_engine("sqlite://"), {}, system_clock, environment(settings),
                             load_reasons(settings.files.reasons))
    return app


ENGLISH = {"accept-language": "en"}  # the browser's language: these tests read the English texts


@dataclass
class Site:
    base: str
    app: Starlette
    provider: OidcProvider

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, follow_redirects=True, timeout=30, headers=ENGLISH)

    def sign_in(self, browser: httpx.Client, next: str | None = None) -> httpx.Response:
        return browser.get("/signin", params={"next": next} if next is not None else None)

    def callback_url(self, browser: httpx.Client) -> str:
        """Starts a sign-in and stops where the provider sends the browser back: the callback URL."""
        to_provider = browser.get("/signin", follow_redirects=False)
        assert to_provider.status_code == 302, to_provider.text
        back = browser.get(to_provider.headers["location"], follow_redirects=False)
        assert back.status_code == 302, back.text
        assert back.headers["location"].startswith(f"{self.base}/signin/callback?")
        return back.headers["location"]


@pytest.fixture
def site(oidc_provider: OidcProvider, monkeypatch) -> Iterator[Site]:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    app = make_app(oidc_settings(oidc_provider.metadata_url))
    with serving(app) as base:
        oidc_provider.redirect_uris.add(f"{base}/signin/callback")
        yield Site(base, app, oidc_provider)


def signed_in(browser: httpx.Client) -> dict[str, Any] | None:
    page = browser.get("/")
    assert page.status_code in (200, 401), page.text
    return page.json() if page.status_code == 200 else None


# --- OpenID Connect ------------------------------------------------------------------------------

def test_staff_on_a_list_signs_in_and_is_seen_with_their_team(site: Site):
    with site.browser() as browser:
        assert signed_in(browser) is None
        site.provider.sign_in_as("Morad.Staff@Worldline.localhost", "Morad Staff", email_verified=True)
        page = site.sign_in(browser)
        assert page.status_code == 200, page.text
        assert str(page.url) == f"{site.base}/"
        assert page.json()["email"] == MORAD and page.json()["name"] == "Morad Staff"
        assert page.json()["teams"] == ["worldline"]
        assert signed_in(browser) == page.json()
    # The app asked for a code with state, nonce and PKCE (S256), and the provider issued its token.
    [asked] = site.provider.authorizations
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"] and asked["nonce"] and asked["state"]
    assert site.provider.outcomes("token") == ["issued"]

    with site.browser() as browser:
        site.provider.sign_in_as(SERVICE_MANAGER, "Service Manager")
        assert site.sign_in(browser).json()["teams"] == ["bosa"]


def test_someone_on_both_lists_is_staff_of_both_teams(site: Site):
    site.app.state.settings = with_web(site.app.state.settings,
                                       staff={"worldline": (MORAD, SERVICE_MANAGER), "bosa": (SERVICE_MANAGER,)})
    with site.browser() as browser:
        site.provider.sign_in_as(SERVICE_MANAGER, "Service Manager")
        assert site.sign_in(browser).json()["teams"] == ["worldline", "bosa"]


def test_someone_on_no_list_is_refused_saying_who_they_are(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as("eve.outsider@worldline.localhost", "Eve Outsider")
        page = site.sign_in(browser)
        assert page.status_code == 403
        assert "Eve Outsider &lt;eve.outsider@worldline.localhost&gt;" in page.text
        assert "not on the staff list" in page.text
        assert signed_in(browser) is None
    assert site.provider.outcomes("token") == ["issued"]  # the provider did sign her in: the app refused


@pytest.mark.parametrize("lang, title, said", [
    ("fr", "Absent·e de la liste du personnel", "Vous êtes connecté·e auprès de votre organisation en tant que"),
    ("nl", "Niet op de personeelslijst", "U bent bij uw organisatie aangemeld als")])
def test_a_refusal_is_in_the_browsers_language(site: Site, lang: str, title: str, said: str):
    """Belgian staff read French or Dutch: the refusal too, before anyone is signed in."""
    with site.browser() as browser:
        site.provider.sign_in_as("eve.outsider@worldline.localhost", "Eve <b>Outsider</b>")
        browser.headers["accept-language"] = f"{lang}-BE,{lang};q=0.9,en;q=0.5"
        page = site.sign_in(browser)
        assert page.status_code == 403
        assert f'<html lang="{lang}">' in page.text and f"<h1>{title}</h1>" in page.text
        assert f"{said} <strong>Eve &lt;b&gt;Outsider&lt;/b&gt; &lt;eve.outsider@worldline.localhost&gt;</strong>" \
            in page.text
        assert "staff list" not in page.text


def test_an_unverified_address_is_refused(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff", email_verified=False)
        page = site.sign_in(browser)
        assert page.status_code == 403 and "not verified" in page.text
        assert signed_in(browser) is None


@pytest.mark.parametrize("forgery", [
    {"forge_signature": True},  # signed by a key not in the provider's JWKS
    {"id_token_overrides": {"aud": "another-app"}},
    {"id_token_overrides": {"nonce": "not-the-nonce-the-app-sent"}},
    {"id_token_overrides": {"iss": "http://127.0.0.1:9/"}},
    {"id_token_overrides": {"exp": int(time.time()) - 3600}},
], ids=["other-key", "audience", "nonce", "issuer", "expired"])
def test_a_forged_id_token_is_refused(site: Site, forgery: dict[str, Any]):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff", **forgery)
        page = site.sign_in(browser)
        assert page.status_code == 403, page.text
        assert "failed its checks" in page.text
        assert signed_in(browser) is None
    assert site.provider.outcomes("token") == ["issued"]


def test_the_provider_refusing_gives_a_clear_page(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff", deny="access_denied")
        page = site.sign_in(browser)
        assert page.status_code == 403 and "did not sign you in" in page.text
        assert signed_in(browser) is None
    assert site.provider.outcomes("token") == []


def test_a_callback_replayed_in_the_same_browser_is_refused(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        page = site.sign_in(browser)
        assert page.status_code == 200
        callback = str(page.history[1].headers["location"])
        assert callback.startswith(f"{site.base}/signin/callback?")
        again = browser.get(callback)
        assert again.status_code == 400 and "Sign-in failed" in again.text
    assert site.provider.outcomes("token") == ["issued"]  # refused on the state, before asking the provider


def test_a_callback_replayed_with_the_session_of_before_is_refused(site: Site):
    """A cookie copied before the callback still holds the state; the code is spent."""
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        callback = site.callback_url(browser)
        cookies_before = dict(browser.cookies)
        assert browser.get(callback).status_code == 200
    with httpx.Client(base_url=site.base, cookies=cookies_before, timeout=30) as thief:
        again = thief.get(callback, follow_redirects=True)
        assert again.status_code == 400 and "invalid_grant" in again.text
        assert signed_in(thief) is None
    assert site.provider.outcomes("token") == ["issued", "invalid_grant"]


def test_a_callback_link_cannot_put_its_own_words_on_the_page(site: Site):
    """/signin/callback?error=... is a link anyone can send staff: its error is shown only as an
    OAuth error code, never as the sender's sentence."""
    with site.browser() as browser:
        page = browser.get("/signin/callback", params={"error": "Access suspended: call +32 2 555 01 99",
                                                        "error_description": "urgent"})
        said = page.text.split("<main>")[1].split("</main>")[0]  # what the page says (its forms keep the path)
        assert page.status_code == 400 and "Sign-in failed" in said
        assert "+32 2 555 01 99" not in said and "urgent" not in said and "<code>" not in said
        assert "<code>server_error</code>" in browser.get("/signin/callback", params={"error": "server_error"}).text


def test_a_callback_from_another_browser_or_with_another_state_is_refused(site: Site):
    site.provider.sign_in_as(MORAD, "Morad Staff")
    with site.browser() as browser, site.browser() as other:
        callback = site.callback_url(browser)
        # Login CSRF: the victim's browser is sent the attacker's callback.
        assert other.get(callback).status_code == 400
        assert signed_in(other) is None
        tampered = callback.replace("state=", "state=x")
        assert browser.get(tampered).status_code == 400
        assert signed_in(browser) is None
        assert site.provider.outcomes("token") == []  # neither spent the code
        assert browser.get(callback).json()["email"] == MORAD


def test_signing_out_needs_the_csrf_token_and_ends_the_session(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        me = site.sign_in(browser).json()
        assert browser.post("/signout").status_code == 403
        assert browser.post("/signout", data={"csrf": "forged"}).status_code == 403
        assert signed_in(browser) is not None
        out = browser.post("/signout", data={"csrf": me["csrf"]}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert signed_in(browser) is None


def test_each_sign_in_starts_a_new_session(site: Site):
    """Nothing kept in the session before a sign-in (its CSRF token here) survives it."""
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        first = site.sign_in(browser).json()
        site.provider.sign_in_as(SERVICE_MANAGER, "Service Manager")
        second = site.sign_in(browser).json()
        assert second["email"] == SERVICE_MANAGER and second["csrf"] != first["csrf"]


def test_a_sign_in_older_than_session_hours_is_over(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        assert site.sign_in(browser).status_code == 200
        time.sleep(1.1)
        settings = site.app.state.settings
        site.app.state.settings = with_web(settings, session_hours=0.5 / 3600)  # half a second
        assert signed_in(browser) is None
        site.app.state.settings = settings  # the age decides, not a mark left in the session
        assert signed_in(browser) is not None


def test_someone_taken_off_the_list_is_out_at_once(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        assert site.sign_in(browser).status_code == 200
        site.app.state.settings = with_web(site.app.state.settings, staff={"worldline": ("someone.else@worldline.localhost",)})
        assert signed_in(browser) is None


@pytest.mark.parametrize("target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example/x",
                                    "http:/evil.example", "javascript:alert(1)", "evil.example"])
def test_next_never_leaves_the_site(site: Site, target: str):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        page = site.sign_in(browser, next=target)
        assert page.status_code == 200
        assert str(page.url) == f"{site.base}/"


def test_next_leads_to_the_page_asked_for(site: Site):
    with site.browser() as browser:
        site.provider.sign_in_as(MORAD, "Morad Staff")
        page = site.sign_in(browser, next="/app/dossiers?step=late")
        assert page.json()["at"] == "/app/dossiers?step=late"


def test_no_demo_sign_in_with_oidc(site: Site):
    with site.browser() as browser:
        assert browser.post("/signin/demo", data={"csrf": "x"}).status_code == 404
        assert signed_in(browser) is None


def test_an_unreachable_provider_gives_a_clear_page(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    with closed_port() as port:
        app = make_app(oidc_settings(f"http://127.0.0.1:{port}/.well-known/openid-configuration"))
        with TestClient(app, headers=ENGLISH) as browser:
            page = browser.get("/signin", follow_redirects=False)
            assert page.status_code == 502 and "cannot be reached" in page.text


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on, for the block."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        yield sock.getsockname()[1]


# --- the sandbox's demo user -----------------------------------------------------------------------

def demo_app(**web: Any) -> Starlette:
    data = sandbox_data()
    data["web"] = {**data["web"], **web}
    return make_app(parse_settings(data))


def test_demo_signs_in_the_demo_user_with_a_csrf_token():
    with TestClient(demo_app(), headers=ENGLISH) as browser:
        form = browser.get("/signin", params={"next": "/app/dossiers"})
        assert form.status_code == 200 and 'action="/signin/demo"' in form.text and MORAD in form.text
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        assert browser.post("/signin/demo", data={"next": "/"}).status_code == 403
        assert browser.get("/").status_code == 401
        page = browser.post("/signin/demo", data={"csrf": token, "next": "/app/dossiers"})
        assert page.status_code == 200 and page.json()["at"] == "/app/dossiers"
        assert page.json()["email"] == MORAD and page.json()["teams"] == ["worldline"]
        assert browser.get("/signin/callback").status_code == 404  # no OpenID Connect route in the demo


def test_demo_user_on_no_list_is_refused():
    with TestClient(demo_app(demo_user="visitor@worldline.localhost"), headers=ENGLISH) as browser:
        form = browser.get("/signin")
        token = form.text.split('name="csrf" value="')[1].split('"')[0]
        page = browser.post("/signin/demo", data={"csrf": token})
        assert page.status_code == 403 and "not on the staff list" in page.text
        assert browser.get("/").status_code == 401


# --- pure ------------------------------------------------------------------------------------------

def test_every_refusal_has_its_title_and_text_in_every_language():
    env = environment(parse_settings(sandbox_data()))
    for lang in ("fr", "nl", "en"):
        refused = env.get_template(f"web/_ui_{lang}.j2").module.ui["refused"]  # type: ignore[attr-defined]
        assert set(refused) == {*get_args(Refusal), "again", "signed_in_as"}, lang
        for what in get_args(Refusal):
            assert refused[what]["title"].strip() and refused[what]["text"].strip(), (lang, what)


@pytest.mark.parametrize(("value", "expected"), [
    ("/app/dossiers?step=late", "/app/dossiers?step=late"), ("/", "/"), (None, "/"), ("", "/"),
    ("https://evil.example/", "/"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("evil", "/"),
    ("/\r\nLocation: x", "/"), ("/\tx", "/"),
])
def test_safe_next(value: Any, expected: str):
    assert safe_next(value) == expected
