"""One root exception for the project, with narrow subclasses that say what went wrong."""


class MailbotError(Exception):
    """Root of every error mailbot raises on purpose."""


class ConfigError(MailbotError):
    """The configuration file is missing, malformed or inconsistent."""


class RulesError(ConfigError):
    """A rules file under rules/ is malformed; the message names the file and the entry."""


class UnsafeEnvironment(MailbotError):
    """A safety precondition of the runtime is not met (e.g. defusedxml not active)."""


class FormError(MailbotError):
    """A file cannot be read as an order form. `code` is a FIELDS.md form-level code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class UnreadableForm(FormError):
    def __init__(self, reason: str) -> None:
        super().__init__("unreadable", reason)


class NotAnOrderForm(FormError):
    def __init__(self, reason: str) -> None:
        super().__init__("not_an_order_form", reason)


class WrongVersion(FormError):
    def __init__(self, reason: str, version: str | None, language: str | None) -> None:
        super().__init__("wrong_version", reason)
        self.version = version
        self.language = language


class StoreError(MailbotError):
    """The database cannot be opened or written."""


class NotAnAddress(MailbotError):
    """An erasure request (`mailbot forget`) that does not name an e-mail address."""


class SandboxError(MailbotError):
    """A local sandbox server (Dovecot, pymap, the SMTP sink) cannot be started or used."""
