"""What the pipeline and the scheduled jobs need, loaded once at start-up and passed in explicitly."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from mailbot.answers.language import LanguageWords, load_language_words
from mailbot.answers.render import Renderer
from mailbot.calendar import BusinessCalendar, load_calendars
from mailbot.config import Settings
from mailbot.errors import ConfigError
from mailbot.forms import FormRules, load_rules
from mailbot.mail.documents import DocumentRules, load_document_rules
from mailbot.mail.forwards import ForwardRules, load_forward_rules
from mailbot.mail.robots import RobotRules, load_robot_rules
from mailbot.mail.subject import SubjectRules, load_subject_rules
from mailbot.outbox import Limits


@dataclass
class Context:
    """Everything the pipeline needs, loaded once at start-up and passed in explicitly."""
    settings: Settings
    engine: Engine
    form_rules: FormRules
    subject_rules: SubjectRules
    document_rules: DocumentRules
    robot_rules: RobotRules
    language_words: LanguageWords
    calendars: dict[str, BusinessCalendar]
    renderer: Renderer
    forward_rules: ForwardRules
    max_attempts: int = 3
    # Mail that reached the mailboxes before this is history (mailbot/history.py); set by the
    # daemon from its first start. None (replay, the demo): no mail is history.
    history_before: dt.datetime | None = None

    @property
    def limits(self) -> Limits:
        a = self.settings.answers
        return Limits(per_purpose_per_day=a.per_purpose_per_day, per_address_per_day=a.per_address_per_day,
                      notes_per_dossier_per_day=a.notes_per_dossier_per_day,
                      notes_per_sender_per_day=a.notes_per_sender_per_day,
                      notes_outside_dossiers_per_day=a.notes_outside_dossiers_per_day)

    @classmethod
    def load(cls, settings: Settings, engine: Engine, max_attempts: int = 3) -> Context:
        files = settings.files
        calendars = load_calendars(files.calendars)
        for name, rule in (("prevalidation", settings.deadlines.prevalidation),
                           ("encoding", settings.deadlines.encoding)):
            if rule.calendar not in calendars:
                raise ConfigError(f"deadlines.{name}.calendar: no calendar named {rule.calendar!r} in "
                                  f"{files.calendars or 'the shipped calendars'}")
        return cls(settings, engine, load_rules(files.form_rules), load_subject_rules(files.subject_rules),
                   load_document_rules(files.document_rules), load_robot_rules(files.robot_rules),
                   load_language_words(files.languages), calendars, Renderer.for_settings(settings),
                   load_forward_rules(files.forward_rules), max_attempts)
