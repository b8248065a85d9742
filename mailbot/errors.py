"""One root exception for the project, with narrow subclasses that say what went wrong."""

from typing import ClassVar


class MailbotError(Exception):
    """Root of every error mailbot raises on purpose."""


class ConfigError(MailbotError):
    """The configuration file is missing, malformed or inconsistent."""


class RulesError(ConfigError):
    """A rules file (mailbot/rules/, or one [files] names) is malformed; the message names the
    file and the entry."""


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


class OutboxStateError(MailbotError):
    """A state change the outbox's state machine does not allow (mailbot/outbox.py): a bug."""


class TransportError(MailbotError):
    """A mail server could not be reached or used. Raised only by mailbot/transport, which
    translates the libraries' and the sockets' errors into these; the message names the host
    and the step."""


class ConnectionLost(TransportError):
    """No connection to the server, or it broke (name, network, TLS, timeout, the server went
    away or answered nonsense): the server is away, try again later."""


class ImapError(TransportError):
    """The IMAP server could not be reached or used."""


class ImapConnectionLost(ImapError, ConnectionLost):
    """No connection to the IMAP server, or it broke: reconnect and catch up."""


class ImapLoginFailed(ImapError):
    """The server refused the login."""


class ImapCommandFailed(ImapError):
    """The server refused a command (NO or BAD), e.g. an APPEND over quota."""


class SmtpError(TransportError):
    """The SMTP server did not take a mail; `code` is its reply code, when it gave one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SmtpLoginFailed(SmtpError):
    """The SMTP server refused the login: mail waits in the outbox until the credentials work."""


class SmtpTemporary(SmtpError):
    """Worth trying again later: a 4xx reply, or no reply at all."""


class SmtpConnectionLost(SmtpTemporary, ConnectionLost):
    """No connection to the SMTP server, or it broke."""


class SmtpPermanent(SmtpError):
    """A 5xx reply: the server will not take this mail, now or later."""


class SignInError(TransportError):
    """Signing in to a mail server failed (OAuth2 token or login); the message names the
    mailbox and, where there is one, the provider's or the server's answer."""


class CredentialsRefused(SignInError):
    """The token endpoint or the mail server refused the credentials (wrong or revoked secret,
    missing permission): nothing changes until someone fixes them, so retries are slow."""


class TokenUnavailable(SignInError):
    """The token endpoint could not be reached or failed (network, 5xx): tried again soon."""


class ConnectionStepFailed(ImapConnectionLost):
    """A step of reaching a mail server failed: the message names the host and the step
    ("cannot resolve imap.bosa.invalid: ...", "login refused by outlook.office365.com: ...").

    A lost connection: the watcher waits it out (reconnect with backoff). A refused login is
    ImapLoginFailed, with the same wording."""

    STEPS: ClassVar[dict[str, str]] = {
        "resolve": "cannot resolve {host}",
        "connect": "cannot connect to {host}",
        "tls": "TLS with {host} failed",
        "login": "login refused by {host}",
    }

    def __init__(self, host: str, step: str, detail: str) -> None:
        super().__init__(f"{self.STEPS[step].format(host=host)}: {detail}")
        self.host, self.step, self.detail = host, step, detail


class ActionRefused(MailbotError):
    """A staff member's action cannot be done (the dossier moved on, the mail is no longer
    quarantined, the address is not one): the page says why and changes nothing."""
