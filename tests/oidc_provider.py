"""An OpenID Connect provider on 127.0.0.1 (plain HTTP, as the Oidc config allows on loopback)
for the staff page's sign-in tests: discovery document, authorization endpoint, token endpoint
(client secret, code, redirect URI and PKCE checked; each code used once), JWKS and userinfo.

There is no login form: the test says who is signed in at the provider (`sign_in_as`), and each
authorization signs that person in and redirects back with a code. The same call can make the
provider deny the sign-in or forge the id token (another key, another audience, another nonce),
as an attacker between the two would. Import as `oidc_provider` (tests/ is on sys.path); the
`oidc_provider` fixture (tests/conftest.py) starts one per test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from mailbot.transport.sandbox import HOST

CLIENT_ID = "mailbot-staff-page"
CLIENT_SECRET = "s3cret-for-the-staff-page"  # test-only, on loopback


@dataclass
class Person:
    """Who is signed in at the provider, and how the provider answers for them."""
    email: str
    name: str
    claims: dict[str, Any] = field(default_factory=dict)  # more id-token claims (email_verified, ...)
    deny: str | None = None  # redirect back with this error (access_denied) instead of a code
    id_token_overrides: dict[str, Any] = field(default_factory=dict)  # aud, nonce, iss, exp, ...
    forge_signature: bool = False  # sign the id token with a key not in the JWKS (same kid)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    person: Person
    expires: float
    used: bool = False


class OidcProvider:
    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris: set[str] = set()  # the app registration's; others are refused
        self.person: Person | None = None
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # an attacker's
        self.kid = secrets.token_hex(8)
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, Person] = {}
        # What happened, for the tests to look at: (endpoint, outcome).
        self.log: list[tuple[str, str]] = []
        self.authorizations: list[dict[str, str]] = []  # the query of each authorization request
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> OidcProvider:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sign_in_as(self, email: str, name: str = "", *, deny: str | None = None,
                   id_token_overrides: dict[str, Any] | None = None, forge_signature: bool = False,
                   **claims: Any) -> Person:
        """From now on each authorization signs in `email` (until the next call)."""
        person = Person(email, name or email, claims, deny, id_token_overrides or {}, forge_signature)
        with self.lock:
            self.person = person
        return person

    def outcomes(self, endpoint: str) -> list[str]:
        with self.lock:
            return [outcome for where, outcome in self.log if where == endpoint]

    def _record(self, endpoint: str, outcome: str) -> None:
        with self.lock:
            self.log.append((endpoint, outcome))

    # --- endpoints ---

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo", "response_types_supported": ["code"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"], "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}

    def jwks(self) -> dict[str, Any]:
        key = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**key, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str] | str]:
        """(302, Location) back to the client, or (400, reason) when there is no client to send
        the error to (unknown client, unregistered redirect URI)."""
        with self.lock:
            self.authorizations.append(dict(query))
            person = self.person
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id:
            self._record("authorize", "unknown client")
            return 400, f"unknown client_id {query.get('client_id')!r}"
        if redirect_uri not in self.redirect_uris:
            self._record("authorize", "unregistered redirect_uri")
            return 400, f"redirect_uri {redirect_uri!r} is not registered"

        def back(**params: str) -> tuple[int, dict[str, str]]:
            if "state" in query:
                params["state"] = query["state"]
            separator = "&" if "?" in redirect_uri else "?"
            return 302, {"Location": redirect_uri + separator + urllib.parse.urlencode(params)}

        if query.get("response_type") != "code":
            self._record("authorize", "unsupported_response_type")
            return back(error="unsupported_response_type")
        if "openid" not in query.get("scope", "").split():
            self._record("authorize", "invalid_scope")
            return back(error="invalid_scope", error_description="openid is not in the scope")
        method = query.get("code_challenge_method")
        if "code_challenge" in query and method != "S256":
            self._record("authorize", "invalid_request")
            return back(error="invalid_request", error_description="code_challenge_method must be S256")
        if person is None:
            self._record("authorize", "nobody signed in")
            return 400, "the test chose nobody to sign in (OidcProvider.sign_in_as)"
        if person.deny:
            self._record("authorize", person.deny)
            return back(error=person.deny, error_description="The user declined to sign in.")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.grants[code] = Grant(self.client_id, redirect_uri, query.get("nonce"), query.get("code_challenge"),
                                      method, person, time.monotonic() + 60)
        self._record("authorize", "code")
        return back(code=code)

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        status, answer = self._token(form, authorization)
        self._record("token", answer.get("error", "issued"))
        return status, answer

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, secret = urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
        if client_id != self.client_id or secret is None or not secrets.compare_digest(secret, self.client_secret):
            return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self.lock:
            grant = self.grants.get(form.get("code", ""))
            fresh = grant is not None and not grant.used and time.monotonic() < grant.expires
            if grant is not None:
                grant.used = True  # a code is good once, whatever the outcome
        if grant is None or not fresh:
            return 400, {"error": "invalid_grant", "error_description": "the code is unknown, used or expired"}
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs from the authorization's"}
        verifier = form.get("code_verifier")
        if grant.code_challenge is not None:
            digest = hashlib.sha256((verifier or "").encode()).digest()
            if verifier is None or base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        elif verifier is not None:
            return 400, {"error": "invalid_grant", "error_description": "a code_verifier without a code_challenge"}
        access_token = secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[access_token] = grant.person
        return 200, {"token_type": "Bearer", "access_token": access_token, "expires_in": 3600,
                     "scope": "openid email profile", "id_token": self.id_token(grant, access_token)}

    def id_token(self, grant: Grant, access_token: str) -> str:
        person, now = grant.person, int(time.time())
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": hashlib.sha256(person.email.lower().encode()).hexdigest()[:24],
            "aud": grant.client_id, "iat": now, "exp": now + 300, "auth_time": now,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode(),
            "email": person.email, "name": person.name, **person.claims}
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(person.id_token_overrides)
        key = self.other_key if person.forge_signature else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def userinfo(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        token = (authorization or "").removeprefix("Bearer ")
        with self.lock:
            person = self.access_tokens.get(token)
        if person is None:
            return 401, {"error": "invalid_token"}
        return 200, {"sub": hashlib.sha256(person.email.lower().encode()).hexdigest()[:24],
                     "email": person.email, "name": person.name, **person.claims}


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif path == "/jwks":
                self._json(200, provider.jwks())
            elif path == "/userinfo":
                self._json(*provider.userinfo(self.headers.get("Authorization")))
            elif path == "/authorize":
                status, answer = provider.authorize({k: v[0] for k, v in urllib.parse.parse_qs(query).items()})
                if isinstance(answer, dict):
                    self.send_response(status)
                    for name, value in answer.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._text(status, answer)
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if self.path.partition("?")[0] == "/token":
                form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                self._json(*provider.token(form, self.headers.get("Authorization")))
            else:
                self._json(404, {"error": "not_found"})

        def _json(self, status: int, answer: dict[str, Any]) -> None:
            self._send(status, json.dumps(answer).encode(), "application/json")

        def _text(self, status: int, text: str) -> None:
            self._send(status, text.encode(), "text/plain; charset=utf-8")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def running_provider(*redirect_uris: str) -> Iterator[OidcProvider]:
    """An OidcProvider serving on 127.0.0.1 for the block; register the app's callback in
    `redirect_uris` here or later in `provider.redirect_uris`."""
    provider = OidcProvider()
    provider.redirect_uris.update(redirect_uris)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
