"""Render a purpose's texts from the Jinja2 templates shipped in mailbot/templates/; a template
of the same name in the folder [files] templates names replaces the shipped one (staff edit
those files).

`<purpose>.<language>.txt` starts with a `Subject:` line; `<purpose>.<language>.html` is the
HTML alternative. A client whose language is unsure gets French and Dutch in one mail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context as TemplateContext

from mailbot.answers.reasons import Reason, ReasonTexts, load_reasons
from mailbot.errors import MailbotError

if TYPE_CHECKING:
    from mailbot.config import Settings


class TemplateProblem(MailbotError):
    """A template is missing or fails to render; staff must fix the templates."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    language: str  # fr | nl | en, or "fr+nl" for both


class Renderer:
    def __init__(self, folder: Path | None, timezone: str, reasons: ReasonTexts | None = None) -> None:
        """`folder`: staff's templates, each replacing the shipped one of its name; None: the
        shipped templates only. `timezone` (process.timezone): named beside the times staff read.
        `reasons`: the texts `say(reason)` renders in the template's language (None: shipped)."""
        shipped = PackageLoader("mailbot", "templates")
        loader: BaseLoader = ChoiceLoader([FileSystemLoader(str(folder)), shipped]) if folder is not None else shipped
        self.env = Environment(loader=loader, autoescape=select_autoescape(["html"]),
                               trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
        self.env.globals["timezone"] = timezone
        self.reasons = reasons or load_reasons()

        @pass_context
        def say(context: TemplateContext, reason: Reason | str) -> str:
            return self.reasons.say(reason, context["language"])
        self.env.globals["say"] = say

    @classmethod
    def for_settings(cls, settings: Settings) -> Renderer:
        """The renderer a configuration names: its templates, time zone and reasons."""
        return cls(settings.files.templates, settings.process.timezone, load_reasons(settings.files.reasons))

    def _one(self, purpose: str, language: str, context: dict[str, Any]) -> Rendered:
        ctx = dict(context, language=language)
        try:
            text = self.env.get_template(f"{purpose}.{language}.txt").render(ctx)
            html = self.env.get_template(f"{purpose}.{language}.html").render(ctx)
        except TemplateError as exc:
            raise TemplateProblem(f"templates/{purpose}.{language}: {exc.__class__.__name__}: {exc}") from exc
        first, _, body = text.partition("\n")
        subject = first.removeprefix("Subject:").strip() if first.startswith("Subject:") else ""
        return Rendered(" ".join(subject.split()), body.lstrip("\n"), html, language)

    def render(self, purpose: str, language: str | None, context: dict[str, Any]) -> Rendered:
        """`language` None: both French and Dutch, French first."""
        if language is not None:
            return self._one(purpose, language, context)
        fr, nl = self._one(purpose, "fr", context), self._one(purpose, "nl", context)
        # One HTML document: the Dutch body goes inside the French page, after a rule.
        html = _BODY.sub(lambda m: m.group(1) + m.group(2) + '<hr>' + _inner(nl.html) + m.group(3), fr.html, count=1)
        return Rendered(f"{fr.subject} / {nl.subject}", f"{fr.text}\n\n-- Nederlandse versie --\n\n{nl.text}",
                        html, "fr+nl")


_BODY = re.compile(r"(<body[^>]*>)(.*)(</body>)", re.S | re.I)


def _inner(html: str) -> str:
    match = _BODY.search(html)
    return match.group(2) if match else html
