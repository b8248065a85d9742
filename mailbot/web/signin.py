"""Who is signed in to the staff page, and the routes that sign staff in and out: the
organisation's OpenID Connect provider (authlib's Starlette client: state, nonce and PKCE
checked), or in the sandbox a local demo user. Only addresses on a team's allowed list get in,
and the lists are read again on every request."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

# authlib 1.7+ warns at import that it prefers httpx2 to httpx; it works with either (both are
# caught in TRANSPORT_ERRORS): no warning for the person starting the page.
import authlib.deprecate  # noqa: F401 - first: it puts its own "always" filter in front at import

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from joserfc.errors import JoseError  # what authlib raises for an id token that fails its checks
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailbot.config import Settings
from mailbot.errors import ConfigError
from mailbot.web.render import render
from mailbot.web.security import checked_form

log = logging.getLogger("mailbot.web.signin")

ERROR_CODE = re.compile(r"[a-z_]{1,40}")  # invalid_grant, mismatching_state, ...
SIGNED_IN = "staff"  # session key: {"email", "name", "at" (epoch seconds)}
NEXT = "signin_next"  # session key: where to go once signed in
# authlib talks to the provider through httpx2 when that is installed, else through httpx.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple(
    importlib.import_module(name).HTTPError for name in ("httpx2", "httpx") if importlib.util.find_spec(name))
# The provider unreachable, or its answers not JSON or missing a field (KeyError), or no authorization
# endpoint in its metadata (RuntimeError from authlib).
UNREACHABLE: tuple[type[Exception], ...] = (*TRANSPORT_ERRORS, ValueError, KeyError, RuntimeError)


@dataclass(frozen=True)
class Staff:
    email: str
    name: str
    teams: tuple[str, ...]  # "worldline", "bosa": the teams whose allowed list holds the address


def teams_of(settings: Settings, address: str) -> tuple[str, ...]:
    """The teams whose allowed list holds `address` (case-insensitive)."""
    address = address.strip().lower()
    return tuple(team for team in settings.mailboxes
                 if address in {allowed.lower() for allowed in settings.allowed_staff(team)})


def settings_of(request: Request) -> Settings:
    """The settings in force now (the app's, which a reload may replace)."""
    return request.app.state.settings


def current_staff(request: Request) -> Staff | None:
    """The signed-in staff member, or None: nobody signed in, the sign-in older than
    web.session_hours, or the address on no team's list any more."""
    settings = settings_of(request)
    signed = request.session.get(SIGNED_IN)
    if not isinstance(signed, dict):
        return None
    email, name, at = signed.get("email"), signed.get("name"), signed.get("at")
    if not isinstance(email, str) or not isinstance(name, str) or not isinstance(at, int | float):
        return None
    age = time.time() - at
    if not 0 <= age <= settings.web.session_hours * 3600:
        return None
    teams = teams_of(settings, email)
    return Staff(email, name, teams) if teams else None


def safe_next(value: Any) -> str:
    """`value` when it is a path on this site, else "/": never a redirect off-site ("//host",
    "/\\host" and "https://host" all are, to a browser)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def _sign_in(request: Request, email: str, name: str, then: str) -> RedirectResponse:
    # A new session for the new identity: nothing set before sign-in (by anyone) carries over
    # but the language the person chose, checked against the languages the page has.
    lang = request.session.get("lang")
    request.session.clear()
    if lang in ("fr", "nl", "en"):
        request.session["lang"] = lang
    request.session[SIGNED_IN] = {"email": email.strip().lower(), "name": name, "at": int(time.time())}
    return RedirectResponse(then, status_code=303)


# Why a sign-in did not happen: each has its title and text in the page's words (_ui_xx.j2 "refused").
Refusal = Literal["unreachable", "cancelled", "out_of_step", "token_failed", "no_id_token", "no_address",
                  "unverified", "not_staff"]


def _refused(request: Request, status: int, what: Refusal, *, who: str = "", detail: str = "") -> HTMLResponse:
    """Why the sign-in did not happen, in the reader's language: `who` the identity the
    provider vouched for, `detail` a value shown as is."""
    return render(request, "signin_refused.html", None, status, what=what, who=who, detail=detail)


def _not_staff(request: Request, email: str, name: str) -> HTMLResponse:
    return _refused(request, 403, "not_staff", who=f"{name} <{email}>" if name and name != email else email)


async def signout(request: Request) -> Response:
    await checked_form(request)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


def signin_routes(settings: Settings) -> list[BaseRoute]:
    """GET /signin, and POST /signout; with OpenID Connect GET /signin/callback, with the
    demo sign-in POST /signin/demo (which exists only then)."""
    routes: list[BaseRoute]
    if settings.web.sign_in == "demo":
        routes = _demo_routes()
    else:
        routes = _oidc_routes(settings)
    return [*routes, Route("/signout", signout, methods=["POST"], name="signout")]


# --- OpenID Connect -----------------------------------------------------------------------------

def _oidc_routes(settings: Settings) -> list[BaseRoute]:
    oidc = settings.web.oidc
    if oidc is None:
        raise ConfigError('web: sign_in = "oidc" needs a [web.oidc] section')
    oauth = OAuth()
    client = oauth.register(
        "staff", server_metadata_url=oidc.metadata_url, client_id=oidc.client_id,
        client_secret=oidc.client_secret(),
        client_kwargs={"scope": oidc.scope, "code_challenge_method": "S256", "timeout": 20.0})
    assert isinstance(client, StarletteOAuth2App)
    public_url = settings.web.public_url

    async def signin(request: Request) -> Response:
        request.session[NEXT] = safe_next(request.query_params.get("next"))
        # Behind the reverse proxy the Host header may be its own: the configured address wins.
        callback = f"{public_url}/signin/callback" if public_url else str(request.url_for("signin_callback"))
        try:
            return await client.authorize_redirect(request, callback)
        except UNREACHABLE as error:
            log.warning("identity provider unreachable", extra={"error": repr(error)})
            return _refused(request, 502, "unreachable")

    async def callback(request: Request) -> Response:
        try:
            token = await client.authorize_access_token(request)
        except OAuthError as error:
            log.info("sign-in refused by the provider or out of step",
                     extra={"error": error.error, "description": error.description})
            if error.error == "access_denied":
                return _refused(request, 403, "cancelled")
            # The code may come from the link that was followed (?error=...): shown only when it
            # has an OAuth error code's shape, never as a text a stranger wrote for staff to read.
            code = str(error.error)
            return _refused(request, 400, "out_of_step", detail=code if ERROR_CODE.fullmatch(code) else "")
        except JoseError as error:
            log.warning("id token failed its checks", extra={"error": repr(error)})
            return _refused(request, 403, "token_failed")
        except UNREACHABLE as error:
            log.warning("identity provider unreachable", extra={"error": repr(error)})
            return _refused(request, 502, "unreachable")
        claims = token.get("userinfo")
        if not claims:
            return _refused(request, 400, "no_id_token")
        email, name = claims.get(oidc.email_claim), claims.get("name")
        if not isinstance(email, str) or "@" not in email:
            return _refused(request, 403, "no_address", detail=oidc.email_claim)
        name = name if isinstance(name, str) and name.strip() else email
        if oidc.email_claim == "email" and claims.get("email_verified") is False:
            return _refused(request, 403, "unverified", detail=email)
        if not teams_of(settings_of(request), email):
            log.info("sign-in of an address on no staff list", extra={"address": email})
            return _not_staff(request, email, name)
        log.info("staff signed in", extra={"address": email.lower()})
        return _sign_in(request, email, name, safe_next(request.session.get(NEXT)))

    return [Route("/signin", signin, methods=["GET"], name="signin"),
            Route("/signin/callback", callback, methods=["GET"], name="signin_callback")]


# --- the sandbox's demo user ----------------------------------------------------------------------

def _demo_routes() -> list[BaseRoute]:
    async def page(request: Request) -> Response:
        user = settings_of(request).web.demo_user
        then = safe_next(request.query_params.get("next"))
        return render(request, "signin.html", None, user=user, then=then)

    async def demo(request: Request) -> Response:
        form = await checked_form(request)
        user = settings_of(request).web.demo_user
        if not teams_of(settings_of(request), user):
            return _not_staff(request, user, user)
        return _sign_in(request, user, user.split("@")[0], safe_next(form.get("next")))

    return [Route("/signin", page, methods=["GET"], name="signin"),
            Route("/signin/demo", demo, methods=["POST"], name="signin_demo")]
