"""Rendering the staff page's templates (mailbot/templates/web/, overridable like the mail
texts, sharing their words): what every request reads (the Site), the reader's language, and one
page rendered with the values every template has."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import HTMLResponse

from mailbot.answers.reasons import ReasonTexts
from mailbot.calendar import BusinessCalendar
from mailbot.clock import Clock
from mailbot.config import Settings
from mailbot.web.security import csrf_token


class Person(Protocol):
    """A signed-in staff member, as the templates show them (web/signin.py Staff)."""
    @property
    def email(self) -> str: ...

    @property
    def teams(self) -> tuple[str, ...]: ...


LANGUAGES = ("fr", "nl", "en")


@dataclass
class Site:
    """What every request reads: on `app.state.site`."""
    settings: Settings
    engine: Engine
    calendars: dict[str, BusinessCalendar]
    clock: Clock
    env: Environment
    reasons: ReasonTexts

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return self.clock().astimezone(self.settings.process.zone).date()


def environment(settings: Settings) -> Environment:
    shipped = PackageLoader("mailbot", "templates")
    folder = settings.files.templates
    loader: BaseLoader = ChoiceLoader([FileSystemLoader(str(folder)), shipped]) if folder is not None else shipped
    env = Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True,
                      undefined=StrictUndefined)
    zone = settings.process.zone

    def local(value: dt.datetime | None, with_time: bool = True) -> str:
        if value is None:
            return "–"
        value = value.astimezone(zone)
        return value.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")

    env.filters["local"] = local
    return env


def language(request: Request, staff: Person | None) -> str:
    chosen = request.session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    settings: Settings = request.app.state.site.settings
    return settings.mailboxes[staff.teams[0]].language if staff and staff.teams else "fr"


def render(request: Request, template: str, staff: Person | None, status: int = 200, **context: Any) -> HTMLResponse:
    site: Site = request.app.state.site
    lang = language(request, staff)
    flash = request.session.pop("flash", None)
    html = site.env.get_template(f"web/{template}").render(
        request=request, staff=staff, lang=lang, languages=LANGUAGES, csrf=csrf_token(request), flash=flash,
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        say=lambda reason: site.reasons.say(reason, lang), today=site.today(), **context)
    return HTMLResponse(html, status)
