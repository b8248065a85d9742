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


class SandboxError(MailbotError):
    """A local sandbox server (Dovecot, pymap, the SMTP sink) cannot be started or used."""


# --- connection steps (mailbot doctor, and the daemon's own connection errors) -------------

class ConnectionStepFailed(MailbotError, ConnectionError):
    """A step of reaching a mail server failed: the message names the host and the step
    ("cannot resolve imap.bosa.invalid: ...", "login refused by outlook.office365.com: ...").

    Also a ConnectionError, so that whatever waits out a lost connection (reconnect with backoff)
    waits this out too."""

    STEPS = {
        "resolve": "cannot resolve {host}",
        "connect": "cannot connect to {host}",
        "tls": "TLS with {host} failed",
        "login": "login refused by {host}",
    }

    def __init__(self, host: str, step: str, detail: str) -> None:
        super().__init__(f"{self.STEPS[step].format(host=host)}: {detail}")
        self.host, self.step, self.detail = host, step, detail
