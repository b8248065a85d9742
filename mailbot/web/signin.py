"""PLACEHOLDER until the web-signin branch lands: the demo sign-in only."""

from __future__ import annotations

import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailbot.config import Settings
from mailbot.web.security import checked_form, csrf_token


@dataclass(frozen=True)
class Staff:
    email: str
    name: str
    teams: tuple[str, ...]


def _teams(settings: Settings, email: str) -> tuple[str, ...]:
    return tuple(t for t in settings.mailboxes if email.lower() in settings.allowed_staff(t))


def current_staff(request: Request) -> Staff | None:
    data = request.session.get("staff")
    if not data:
        return None
    settings = request.app.state.settings
    if time.time() - data.get("at", 0) > settings.web.session_hours * 3600:
        return None
    teams = _teams(settings, data["email"])
    return Staff(data["email"], data.get("name", ""), teams) if teams else None


def signin_routes(settings: Settings) -> list[BaseRoute]:
    async def signin(request: Request) -> Response:
        return HTMLResponse(f'<form method="post" action="/signin/demo"><input type="hidden" name="csrf" '
                            f'value="{csrf_token(request)}"><button>{settings.web.demo_user}</button></form>')

    async def demo(request: Request) -> Response:
        await checked_form(request)
        request.session["staff"] = {"email": settings.web.demo_user, "name": "Demo", "at": time.time()}
        return RedirectResponse("/", 303)

    async def signout(request: Request) -> Response:
        await checked_form(request)
        request.session.clear()
        return RedirectResponse("/signin", 303)

    return [Route("/signin", signin), Route("/signin/demo", demo, methods=["POST"]),
            Route("/signout", signout, methods=["POST"])]
