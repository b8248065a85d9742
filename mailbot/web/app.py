"""The staff page's site: the pages and actions, each behind the sign-in, rendered from the
Jinja2 templates in mailbot/templates/web/ (which share the mail texts' words: stages, waits,
kinds). Store work runs in a worker thread, so that a page never holds up the daemon's loop
when `mailbot run` serves the site beside it.

    GET  /                         the dossiers (filters, search)
    GET  /dossiers/{ref}           one dossier: where it stands and why
    POST /dossiers/{ref}/mark      a step done, the held changes confirmed or rejected
    POST /dossiers/{ref}/link      an address linked to the dossier
    POST /dossiers/{ref}/settle    this dossier is its project's (others claimed it too)
    GET  /attention                the mail that needs a person
    GET  /queues                   the quarantine and the outbox
    POST /mail/{pk}/release | /mail/{pk}/handled | /outbox/{id}/send-again
    POST /language                 FR, NL or EN, the staff member's choice
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlencode

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mailbot.answers.reasons import load_reasons
from mailbot.calendar import load_calendars
from mailbot.clock import Clock, system_clock
from mailbot.config import Settings
from mailbot.errors import ActionRefused
from mailbot.resources import TEMPLATES
from mailbot.store.models import Dossier, Message, OutboxMail
from mailbot.web import actions
from mailbot.web.dossier_list import AWAITED, STAGES, ListFilter, dossier_list
from mailbot.web.dossier_page import dossier_page
from mailbot.web.queues import needing_person, outbox_rows, quarantine
from mailbot.web.render import LANGUAGES, Site, environment, render
from mailbot.web.scope import Scope
from mailbot.web.security import SecurityHeaders, checked_form
from mailbot.web.signin import Staff, current_staff, safe_next, signin_routes

Page = Callable[[Request, Staff], Awaitable[Response]]


def page(fn: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page: for a signed-in staff member only; the others are sent to the sign-in."""
    async def guarded(request: Request) -> Response:
        staff = current_staff(request)
        if staff is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(here)}", 303)
        return await fn(request, staff)
    return guarded


Act = Callable[[Request, Staff, FormData, Session, dt.datetime], str]


def action(fn: Act) -> Callable[[Request], Awaitable[Response]]:
    """An action: a signed-in staff member, the form's CSRF token, one transaction; then back to
    the page it came from with what was done (or why not) shown once."""
    async def guarded(request: Request) -> Response:
        staff = current_staff(request)
        if staff is None:
            raise HTTPException(403, "sign in first")
        form = await checked_form(request)
        site: Site = request.app.state.site

        def work() -> str:
            with Session(site.engine) as session:
                done = fn(request, staff, form, session, site.now())
                session.commit()
                return done

        try:
            done = await run_in_threadpool(work)
            request.session["flash"] = ["done", getattr(request.state, "action", ""), done]
            if getattr(request.state, "nudge", False):
                request.app.state.nudge()  # once committed: the daemon beside the site looks now
        except ActionRefused as exc:
            request.session["flash"] = ["refused", "", str(exc)]
        return RedirectResponse(safe_next(form.get("back")), 303)
    return guarded


def _scope(request: Request, staff: Staff) -> Scope:
    return Scope.of(staff.teams, request.app.state.site.settings)


def _dossier(session: Session, scope: Scope, reference: str) -> Dossier:
    """A dossier the staff member's mailbox saw; any other is no dossier to them."""
    found = scope.dossier(session, reference)
    if found is None:
        raise ActionRefused(f"no dossier {reference}")
    return found


# --- pages ----------------------------------------------------------------------------------------

def _filter(request: Request) -> ListFilter:
    q = request.query_params

    def flag(name: str) -> bool:
        return q.get(name) in ("1", "on", "true")

    try:
        number = int(q.get("page", "1"))
    except ValueError:
        number = 1
    return ListFilter(stage=q.get("stage") if q.get("stage") in STAGES else None,
                      awaited=q.get("awaited") if q.get("awaited") in AWAITED else None,
                      late=flag("late"), due_today=flag("due_today"), needs_person=flag("needs_person"),
                      q=q.get("q", "")[:200], page=number)


@page
async def dossiers(request: Request, staff: Staff) -> Response:
    site: Site = request.app.state.site
    flt = _filter(request)

    def read():
        with Session(site.engine) as session:
            return dossier_list(session, _scope(request, staff), flt, site.today())

    listing = await run_in_threadpool(read)
    kept = {k: v for k, v in request.query_params.items() if k != "page"}
    return render(request, "dossiers.html", staff, listing=listing, flt=flt, stages=STAGES, awaited=AWAITED,
                  page_link=lambda n: "/?" + urlencode({**kept, "page": n}))


@page
async def dossier(request: Request, staff: Staff) -> Response:
    site: Site = request.app.state.site
    reference = request.path_params["reference"]

    def read():
        with Session(site.engine) as session:
            return dossier_page(session, _scope(request, staff), reference)

    found = await run_in_threadpool(read)
    if found is None:
        return render(request, "missing.html", staff, 404, reference=reference)
    return render(request, "dossier.html", staff, d=found, roles=actions.ROLES)


@page
async def attention(request: Request, staff: Staff) -> Response:
    site: Site = request.app.state.site

    def read():
        with Session(site.engine) as session:
            return needing_person(session, _scope(request, staff))

    return render(request, "attention.html", staff, mails=await run_in_threadpool(read))


@page
async def queues(request: Request, staff: Staff) -> Response:
    site: Site = request.app.state.site

    def read():
        with Session(site.engine) as session:
            scope = _scope(request, staff)
            return quarantine(session, scope, site.settings.watched_folders()), outbox_rows(session, scope)

    held, out = await run_in_threadpool(read)
    return render(request, "queues.html", staff, quarantined=held, outbox=out)


# --- actions --------------------------------------------------------------------------------------

def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@action
def mark(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    site: Site = request.app.state.site
    d = _dossier(session, _scope(request, staff), request.path_params["reference"])
    try:
        step = actions.Action(_field(form, "step"))
    except ValueError:
        raise ActionRefused(f"unknown step {_field(form, 'step')!r}") from None
    request.state.action = step.value
    return actions.mark_step(session, d, step, now, staff.email, site.settings, site.calendars)


@action
def link(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    request.state.action = actions.Action.LINK_ADDRESS.value
    d = _dossier(session, _scope(request, staff), request.path_params["reference"])
    return actions.link_address(session, d, _field(form, "address"), _field(form, "role") or "colleague", now,
                                staff.email)


@action
def settle(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    request.state.action = actions.Action.SETTLE_PROJECT.value
    d = _dossier(session, _scope(request, staff), request.path_params["reference"])
    return actions.settle_project(session, d, now, staff.email)


def _visible_message(request: Request, staff: Staff, session: Session) -> int:
    pk = request.path_params["pk"]
    if session.exec(select(Message.id).where(Message.id == pk, _scope(request, staff).message_seen())).first() is None:
        raise ActionRefused(f"no mail {pk}")
    return pk


@action
def release(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    request.state.action = actions.Action.RELEASE.value
    request.state.nudge = True
    return actions.release(session, _visible_message(request, staff, session), now, staff.email,
                           request.app.state.site.settings.watched_folders())


@action
def handled(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    request.state.action = actions.Action.HANDLED.value
    return actions.handled(session, _visible_message(request, staff, session), now, staff.email,
                           _field(form, "note"))


@action
def send_again(request: Request, staff: Staff, form: FormData, session: Session, now: dt.datetime) -> str:
    request.state.action = actions.Action.SEND_AGAIN.value
    row = session.get(OutboxMail, request.path_params["id"])
    if row is None or not _scope(request, staff).sees(row):
        raise ActionRefused(f"no outbox mail {request.path_params['id']}")
    request.state.nudge = True
    return actions.send_failed_again(session, request.path_params["id"], now, staff.email)


async def language(request: Request) -> Response:
    """Any visitor may choose the language (the sign-in page is in it too); CSRF-checked all the same."""
    form = await checked_form(request)
    if _field(form, "lang") in LANGUAGES:
        request.session["lang"] = _field(form, "lang")
    return RedirectResponse(safe_next(form.get("back")), 303)


async def stylesheet(request: Request) -> Response:
    css = TEMPLATES.joinpath("web", "style.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"cache-control": "max-age=3600"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for it
    return render(request, "error.html", current_staff(request), exc.status_code, detail=exc.detail)


def create_app(settings: Settings, engine: Engine, *, clock: Clock = system_clock,
               nudge: Callable[[], None] = lambda: None) -> Starlette:
    """The site on `engine`. `nudge`: wakes the daemon's watchers and sender (a mail released,
    an answer sent again) when the daemon runs in the same process."""
    web = settings.web
    secret = web.session_secret() or secrets.token_urlsafe(32)  # none set: sessions end with the process
    https = bool(web.public_url and web.public_url.startswith("https://"))
    routes = [
        Route("/", dossiers),
        Route("/dossiers/{reference}", dossier),
        Route("/dossiers/{reference}/mark", mark, methods=["POST"]),
        Route("/dossiers/{reference}/link", link, methods=["POST"]),
        Route("/dossiers/{reference}/settle", settle, methods=["POST"]),
        Route("/attention", attention),
        Route("/queues", queues),
        Route("/mail/{pk:int}/release", release, methods=["POST"]),
        Route("/mail/{pk:int}/handled", handled, methods=["POST"]),
        Route("/outbox/{id:int}/send-again", send_again, methods=["POST"]),
        Route("/language", language, methods=["POST"]),
        Route("/style.css", stylesheet),
        *signin_routes(settings),
    ]
    middleware = [
        Middleware(SecurityHeaders, https=https),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie="mailbot_session",
                   max_age=int(web.session_hours * 3600), same_site="lax", https_only=https),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error})
    app.state.settings = settings
    app.state.site = Site(settings, engine, load_calendars(settings.files.calendars), clock,
                          environment(settings), load_reasons(settings.files.reasons))
    app.state.nudge = nudge
    return app
