"""OAuth2 sign-in for IMAP and SMTP: access tokens from Microsoft Entra ID (through MSAL) or from
any OAuth2 token endpoint, kept in memory and renewed before they expire, and the XOAUTH2 /
OAUTHBEARER login steps that present them.

A token source serves every connection made with the same credentials (a mailbox's two folder
watchers, the sent folder, the sender): one lock, so that concurrent logins share one renewal.
A token is asked for only when a connection logs in; a server that closes a connection when its
token expires (Exchange Online does) is reconnected to, and that login takes a fresh token.

After the provider refused the credentials (wrong or revoked secret, unknown tenant), it is not
asked again for `retry_seconds`, then twice as long each time up to an hour: every login in
between fails at once with the same answer. Each use of a source (a mailbox's IMAP, the SMTP
sender) says in the log once when its sign-in starts failing, with the provider's or the
server's answer, and once when it works again; the watchdog reports a refused mailbox to staff.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import requests
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailbot.config import Login, OAuth2
from mailbot.errors import ConfigError, CredentialsRefused, SignInError, TokenUnavailable

log = logging.getLogger("mailbot.oauth")
REFUSED_RETRY_MAX_SECONDS = 3600.0
HTTP_TIMEOUT_SECONDS = 30
# OAuth2 error codes (RFC 6749 5.2) that a retry can cure; any other is a refusal.
TRANSIENT_ERRORS = {"temporarily_unavailable", "server_error"}


class TokenSource(Protocol):
    """Where access tokens come from."""

    def token(self) -> str:
        """A token valid for a while yet; raises CredentialsRefused or TokenUnavailable."""

    def drop(self, token: str) -> None:
        """A server refused `token` (revoked, expired early): the next login gets another."""


class CachedTokenSource:
    """A token kept in memory and renewed `renew_before_seconds` before it expires (at most half
    its lifetime before); failures held for a while, so that the provider is never hammered."""

    def __init__(self, cfg: OAuth2, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.where, self.clock = cfg, where, clock
        self.requests = 0  # how often the provider was asked
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = self._expires_at = 0.0
        self._failure: SignInError | None = None
        self._failures = 0
        self._retry_at = 0.0

    def _request(self) -> tuple[str, float]:
        """Ask the provider: (access token, lifetime in seconds)."""
        raise NotImplementedError

    def _forget(self, token: str) -> None:
        """Forget `token` in any cache of the provider's library too."""

    def token(self) -> str:
        with self._lock:
            now = self.clock()
            if self._token is not None and now < self._renew_at:
                return self._token
            if self._failure is None or now >= self._retry_at:
                self.requests += 1
                try:
                    value, lifetime = self._request()
                except SignInError as exc:
                    self._failed(exc, now)
                else:
                    self._failure, self._failures = None, 0
                    self._token, self._expires_at = value, now + lifetime
                    self._renew_at = self._expires_at - min(self.cfg.renew_before_seconds, lifetime / 2)
                    log.info("oauth2 token issued",
                             extra={"credentials": self.where, "lifetime_seconds": round(lifetime)})
                    return value
            if isinstance(self._failure, TokenUnavailable) and self._token is not None and now < self._expires_at:
                return self._token  # the provider is away: the old token still serves until it expires
            assert self._failure is not None  # else a request was made above, and returned or failed
            raise type(self._failure)(str(self._failure))

    def _failed(self, exc: SignInError, now: float) -> None:
        self._failure, self._failures = exc, self._failures + 1
        if isinstance(exc, CredentialsRefused):
            self._token = None  # a revoked client's token is not used either
            delay = min(self.cfg.retry_seconds * 2 ** (self._failures - 1),
                        max(REFUSED_RETRY_MAX_SECONDS, self.cfg.retry_seconds))
        else:
            delay = min(2.0 ** (self._failures - 1), self.cfg.retry_seconds)
        self._retry_at = now + delay

    def drop(self, token: str) -> None:
        with self._lock:
            if token == self._token:
                self._token = None
                self._forget(token)


def _answer(error: str | None, description: str | None) -> str:
    """The provider's answer in one line: Entra ID's descriptions go on with trace and
    correlation IDs on further lines."""
    text = f"{error or 'error'}: {(description or '').strip()}"
    return text.splitlines()[0].strip().rstrip(":")


def _refusal(where: str, endpoint: str, error: str | None, description: str | None) -> SignInError:
    cls = TokenUnavailable if error in TRANSIENT_ERRORS else CredentialsRefused
    return cls(f"{where}: the token endpoint {endpoint} answered {_answer(error, description)}")


def _verify(cfg: OAuth2) -> str | bool:
    return str(cfg.ca_file) if cfg.ca_file else True


class _Http:
    """The HTTP client given to MSAL: requests with `verify` passed on each request, since
    requests lets REQUESTS_CA_BUNDLE from the environment override a session's own `verify`."""

    def __init__(self, verify: str | bool) -> None:
        self.verify, self.session = verify, requests.Session()

    def get(self, url, params=None, headers=None, **kwargs):
        return self.session.get(url, params=params, headers=headers, verify=self.verify,
                                timeout=HTTP_TIMEOUT_SECONDS, **kwargs)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        return self.session.post(url, params=params, data=data, headers=headers, verify=self.verify,
                                 timeout=HTTP_TIMEOUT_SECONDS, **kwargs)

    def close(self) -> None:
        self.session.close()


class MsalClientCredentials(CachedTokenSource):
    """Microsoft 365: the client-credentials grant of an app registered in Entra ID, through
    MSAL. The app is made at the first request (MSAL reads the authority's OpenID discovery
    document then), so that the daemon starts while Entra ID is unreachable."""

    def __init__(self, cfg: OAuth2, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cfg, where, clock)
        secret = cfg.client_secret(f"{where}.oauth2")
        self._credential: str | dict = secret if secret is not None else _msal_certificate(cfg.certificate_file, where)
        self._app: Any = None  # an msal.ConfidentialClientApplication (msal has no types)

    def _application(self):
        import msal

        if self._app is None:
            try:
                # instance_discovery=False: the authority is the configured one; MSAL knows
                # Microsoft's own hosts and need not ask login.microsoftonline.com about others.
                self._app = msal.ConfidentialClientApplication(
                    self.cfg.client_id, client_credential=self._credential, authority=self.cfg.authority_url,
                    token_cache=msal.TokenCache(), http_client=_Http(_verify(self.cfg)), instance_discovery=False)
            except requests.RequestException as exc:
                raise TokenUnavailable(f"{self.where}: cannot reach {self.cfg.authority_url}: "
                                       f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            except ValueError as exc:  # the discovery document is refused: unknown tenant or authority
                raise CredentialsRefused(f"{self.where}: {self.cfg.authority_url} is not a usable authority: "
                                         f"{str(exc).splitlines()[0][:300]}") from exc
        return self._app

    def _request(self) -> tuple[str, float]:
        from msal.exceptions import MsalServiceError

        app = self._application()
        self._clear_cache()  # this object decides when to renew: a renewal is a real request
        try:
            result = app.acquire_token_for_client(scopes=[self.cfg.token_scope])
        except MsalServiceError as exc:  # 5xx
            raise TokenUnavailable(
                f"{self.where}: the token endpoint of {self.cfg.authority_url} failed: {exc}") from exc
        except requests.RequestException as exc:
            raise TokenUnavailable(f"{self.where}: cannot reach the token endpoint of {self.cfg.authority_url}: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        except ValueError as exc:
            raise TokenUnavailable(f"{self.where}: unreadable answer from {self.cfg.authority_url}: {exc}") from exc
        if "access_token" not in result:
            raise _refusal(self.where, f"of {self.cfg.authority_url}", result.get("error"),
                           result.get("error_description"))
        return result["access_token"], float(result.get("expires_in", 3600))

    def _clear_cache(self) -> None:
        cache = self._app.token_cache
        for entry in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):  # search() holds a lock while iterated
            cache.remove_at(entry)

    def _forget(self, token: str) -> None:
        if self._app is not None:
            self._clear_cache()


def _msal_certificate(path: Path | None, where: str) -> dict:
    if path is None:
        raise ConfigError(f"{where}.oauth2: set client_secret_env, client_secret_file or certificate_file")
    if path.suffix.lower() in (".pfx", ".p12"):
        if not path.is_file():
            raise ConfigError(f"{where}.oauth2: cannot read the certificate file {path}")
        return {"private_key_pfx_path": str(path)}  # MSAL takes its SHA-256 thumbprint
    pem = _read(path, where)
    if "PRIVATE KEY-----" not in pem or "BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError(f"{where}.oauth2: {path} must hold the private key and the certificate (PEM)")
    # Without "thumbprint" MSAL takes the certificate's SHA-256 thumbprint (x5t#S256).
    return {"private_key": pem, "public_certificate": pem}


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}.oauth2: cannot read the certificate file {path}") from exc


class OAuth2ClientSource(CachedTokenSource):
    """Any OAuth2 token endpoint (Google and others), through authlib: the refresh-token grant
    when a refresh token is configured (Google), else client credentials. The client
    authenticates with its secret (HTTP Basic, which RFC 6749 makes every server take) or with
    a certificate's key (private_key_jwt, RFC 7523). A provider that rotates refresh tokens
    sends a new one with each token: it is kept in memory (not written back to the file)."""

    def __init__(self, cfg: OAuth2, where: str, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(cfg, where, clock)
        self._secret = cfg.client_secret(f"{where}.oauth2")
        self._key = _read(cfg.certificate_file, where) if cfg.certificate_file else None
        self._refresh = cfg.refresh_token(f"{where}.oauth2")

    def _request(self) -> tuple[str, float]:
        from authlib.integrations.requests_client import OAuth2Session, OAuthError
        from authlib.oauth2.rfc7523 import PrivateKeyJWT

        cfg = self.cfg
        assert cfg.token_url is not None  # required of provider 'generic' (config.py)
        method = "private_key_jwt" if self._key else "client_secret_basic" if self._secret else "none"
        session = OAuth2Session(cfg.client_id, self._key or self._secret, token_endpoint_auth_method=method,
                                scope=cfg.scope)
        if self._key:
            session.register_client_auth_method(PrivateKeyJWT(cfg.token_url))
        http: dict[str, Any] = {"timeout": HTTP_TIMEOUT_SECONDS, "verify": _verify(cfg)}  # per request: see _Http
        try:
            if self._refresh:
                token = session.refresh_token(cfg.token_url, refresh_token=self._refresh, **http)
            else:
                token = session.fetch_token(cfg.token_url, grant_type="client_credentials", **http)
        except OAuthError as exc:
            raise _refusal(self.where, cfg.token_url, exc.error, exc.description) from exc
        except (requests.RequestException, ValueError) as exc:
            raise TokenUnavailable(f"{self.where}: no usable answer from the token endpoint {cfg.token_url}: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        finally:
            session.close()
        if not token.get("access_token"):
            raise TokenUnavailable(f"{self.where}: the token endpoint {cfg.token_url} sent no access_token")
        if token.get("refresh_token"):
            self._refresh = token["refresh_token"]
        return token["access_token"], float(token.get("expires_in") or 3600)


@dataclass
class OAuthLogin:
    """One use of a token source -- a mailbox's IMAP, or the SMTP sender -- and how its sign-in
    fares: `refused` holds the last refusal (the provider's or the server's answer) until a
    login succeeds; the watchdog reports it."""
    source: TokenSource
    where: str  # "mailboxes.worldline.imap", "smtp"
    host: str
    refused: str | None = None
    _problem: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self) -> str:
        try:
            return self.source.token()
        except SignInError as exc:
            self.failed(exc)
            raise

    def failed(self, exc: SignInError) -> None:
        """Log the first failure and each change of answer (not every retry)."""
        with self._lock:
            changed = str(exc) != self._problem
            self._problem = str(exc)
            if isinstance(exc, CredentialsRefused):
                self.refused = str(exc)
        if changed:
            level = logging.ERROR if isinstance(exc, CredentialsRefused) else logging.WARNING
            log.log(level, "sign-in refused" if level == logging.ERROR else "sign-in failed",
                    extra={"credentials": self.where, "host": self.host, "reason": str(exc)})

    def server_refused(self, token: str, answer: str) -> CredentialsRefused:
        """The mail server refused `token`: a new one for the next login (it may have been
        revoked), and the refusal noted."""
        self.source.drop(token)
        exc = CredentialsRefused(f"{self.where}: {self.host} refused the OAuth2 token: {answer}")
        self.failed(exc)
        return exc

    def succeeded(self) -> None:
        with self._lock:
            was, self._problem, self.refused = self._problem, None, None
        if was is not None:
            log.info("sign-in accepted again", extra={"credentials": self.where, "host": self.host})


Credential = str | OAuthLogin  # a password, or a token source's use


class TokenSources:
    """The daemon's token sources: one for each distinct oauth2 section, so that the same
    credentials configured for a mailbox's IMAP and for the sender share one token."""

    def __init__(self) -> None:
        self._sources: dict[OAuth2, CachedTokenSource] = {}

    def credential(self, cfg: Login, where: str, host: str) -> Credential:
        """The password of `cfg`, or its OAuthLogin; secrets are read now (a missing one is a
        ConfigError at start, as for passwords)."""
        if cfg.auth != "oauth2":
            return cfg.password(where)
        assert cfg.oauth2 is not None  # required with auth = "oauth2" (config.py)
        source = self._sources.get(cfg.oauth2)
        if source is None:
            kind = MsalClientCredentials if cfg.oauth2.provider == "microsoft" else OAuth2ClientSource
            source = self._sources[cfg.oauth2] = kind(cfg.oauth2, where)
        return OAuthLogin(source, where, host)


# --- the login steps -------------------------------------------------------------------------

def imap_login(client: IMAPClient, user: str, credential: Credential) -> None:
    """LOGIN with a password, or AUTHENTICATE OAUTHBEARER (RFC 7628) where the server offers it,
    else XOAUTH2 (Microsoft 365, Gmail). Raises CredentialsRefused with the server's answer."""
    if isinstance(credential, str):
        client.login(user, credential)
        return
    token = credential.token()
    if client.has_capability("AUTH=OAUTHBEARER"):
        mechanism, gs2 = "OAUTHBEARER", "n,a=" + user.replace("=", "=3D").replace(",", "=2C") + ","
        first, abort = f"{gs2}\1auth=Bearer {token}\1\1", "\1"
    else:
        mechanism = "XOAUTH2"
        first, abort = f"user={user}\1auth=Bearer {token}\1\1", ""
    errors: list[bytes] = []

    def respond(challenge: bytes) -> str:
        if not challenge:
            return first
        # A challenge after the token is the server's error (JSON): answered with the
        # mechanism's empty reply, the server then ends with NO (RFC 7628 3.2.3).
        errors.append(challenge)
        return abort

    try:
        client.sasl_login(mechanism, respond)
    except LoginError as exc:
        answer = f"{mechanism} {exc}" + (f" {errors[-1].decode('utf-8', 'replace')[:300]}" if errors else "")
        if "[UNAVAILABLE]" in str(exc).upper():  # the server could not check the token now
            unavailable = TokenUnavailable(f"{credential.where}: {credential.host} could not check the token: {answer}")
            credential.failed(unavailable)
            raise unavailable from exc
        raise credential.server_refused(token, answer) from exc
    credential.succeeded()


async def smtp_login(smtp: aiosmtplib.SMTP, user: str | None, credential: Credential | None) -> None:
    """AUTH with a password, or AUTH XOAUTH2 with a token (Microsoft 365, Gmail); nothing when
    no user is configured. Raises aiosmtplib's SMTPAuthenticationError with the server's answer,
    or a SignInError when no token could be had."""
    if not user:
        return
    if not isinstance(credential, OAuthLogin):
        await smtp.login(user, credential or "")
        return
    token = await asyncio.to_thread(credential.token)
    try:
        await smtp.auth_xoauth2(user, token)
    except aiosmtplib.SMTPAuthenticationError as exc:
        credential.server_refused(token, f"{exc.code} {exc.message}")
        raise
    credential.succeeded()
