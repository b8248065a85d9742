"""OAuth2 servers on 127.0.0.1 for the sign-in tests: a token provider (HTTPS, with the OpenID
discovery document MSAL reads, a Microsoft-shaped client-credentials endpoint and a generic one
with refresh tokens, plus an HTTP introspection endpoint for Dovecot), a Dovecot whose oauth2
passdb asks that endpoint, and a LocalSmtp that takes only AUTH XOAUTH2, checked by the provider.

Tokens are random strings the provider remembers: issued to which client, for which mailbox,
until when, revoked or not. Import as `oauth_servers` (tests/ is on sys.path).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import signal
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailbot.transport.sandbox import HOST, DovecotServer, LocalSmtp, _Handler, free_port

TENANT = "3f2a6c1e-7b0d-4d7e-9c55-5a1f0e2b9d41"  # looks like a directory ID; only this server knows it


# --- certificates ------------------------------------------------------------------------------

def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def write_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("mailbot test CA")).issuer_name(_name("mailbot test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def client_certificate(path: Path, client_id: str) -> str:
    """An RSA key and its self-signed certificate in one PEM file, as uploaded to an app
    registration; returns the certificate (PEM) the provider checks assertions with."""
    now = dt.datetime.now(dt.timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (x509.CertificateBuilder().subject_name(_name(client_id)).issuer_name(_name(client_id))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    path.write_text(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode() + cert_pem)
    return cert_pem


# --- the provider ------------------------------------------------------------------------------

@dataclass
class Client:
    client_id: str
    user: str  # the mailbox this app was granted (its tokens log in as that user)
    secret: str | None = None
    certificate: str | None = None  # PEM, for client assertions
    refresh_tokens: set[str] = field(default_factory=set)
    rotate: bool = False  # a new refresh token with each token, the old one revoked


@dataclass
class Issued:
    client_id: str
    user: str
    token: str
    at: float  # time.monotonic()
    expires: float
    revoked: bool = False


class TokenProvider:
    """The identity provider: HTTPS token endpoints and discovery, HTTP introspection."""

    def __init__(self, directory: Path, lifetime: float = 3600.0) -> None:
        self.directory = Path(directory)
        self.lifetime = lifetime
        self.clients: dict[str, Client] = {}
        self.issued: list[Issued] = []
        self.requests: list[tuple[str, str, str]] = []  # (endpoint, client_id, outcome)
        self.introspections: list[tuple[str, bool]] = []  # (token, active)
        self.fail_with: tuple[int, str] | None = None  # (status, OAuth2 error) for every token request
        self.delay = 0.0  # seconds each token request takes
        self.lock = threading.Lock()
        self.ca_file, cert, key = write_tls(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self._https = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._https.socket = context.wrap_socket(self._https.socket, server_side=True)
        self._http = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._threads: list[threading.Thread] = []

    @property
    def base(self) -> str:
        return f"https://{HOST}:{self._https.server_address[1]}"

    @property
    def authority(self) -> str:
        return f"{self.base}/{TENANT}"

    @property
    def token_url(self) -> str:
        return f"{self.base}/generic/token"

    @property
    def introspection_url(self) -> str:
        return f"http://{HOST}:{self._http.server_address[1]}/introspect"

    def start(self) -> TokenProvider:
        for server in (self._https, self._http):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()

    def add_client(self, client_id: str, user: str, secret: str | None = None, certificate: str | None = None,
                   refresh_token: str | None = None, rotate: bool = False) -> Client:
        client = Client(client_id, user, secret, certificate, {refresh_token} if refresh_token else set(), rotate)
        with self.lock:
            self.clients[client_id] = client
        return client

    def tokens_of(self, client_id: str) -> list[Issued]:
        with self.lock:
            return [i for i in self.issued if i.client_id == client_id]

    def revoke(self, token: str) -> None:
        with self.lock:
            for issued in self.issued:
                if issued.token == token:
                    issued.revoked = True

    def active(self, token: str) -> Issued | None:
        """The token's record while it is valid: issued here, not expired, not revoked."""
        with self.lock:
            for issued in self.issued:
                if issued.token == token:
                    return issued if not issued.revoked and time.monotonic() < issued.expires else None
        return None

    # --- endpoints ---

    def discovery(self, tenant: str) -> tuple[int, dict]:
        if tenant != TENANT:
            return 400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        root = f"{self.base}/{TENANT}"
        return 200, {"issuer": f"{root}/v2.0", "token_endpoint": f"{root}/oauth2/v2.0/token",
                     "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                     "jwks_uri": f"{root}/discovery/v2.0/keys", "response_types_supported": ["code"],
                     "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"]}

    def token(self, endpoint: str, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, secret = urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
        if not client_id and form.get("client_assertion"):  # RFC 7523: the assertion names the client
            try:
                client_id = jwt.decode(form["client_assertion"], options={"verify_signature": False}).get("sub", "")
            except jwt.PyJWTError:
                pass
        status, answer = self._token(endpoint, client_id, secret, form)
        with self.lock:
            self.requests.append((endpoint, client_id, answer.get("error", "issued")))
        return status, answer

    def _token(self, endpoint: str, client_id: str, secret: str | None, form: dict[str, str]) -> tuple[int, dict]:
        time.sleep(self.delay)
        if self.fail_with:
            status, error = self.fail_with
            return status, {"error": error, "error_description": "the provider is failing on purpose"}
        with self.lock:
            client = self.clients.get(client_id)
        if client is None:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory."}
        if not self._authenticated(client, secret, form, endpoint):
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request "
                         f"is the client secret value, not the client secret ID.\r\nTrace ID: {secrets.token_hex(8)}"}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            scope = form.get("scope", "")
            wanted = "https://outlook.office365.com/.default" if endpoint == "microsoft" else "https://mail.google.com/"
            if wanted not in scope.split():
                return 400, {"error": "invalid_scope", "error_description": f"scope {scope!r} is not {wanted!r}"}
        elif grant == "refresh_token":
            if form.get("refresh_token") not in client.refresh_tokens:
                return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}
        now = time.monotonic()
        issued = Issued(client.client_id, client.user, secrets.token_urlsafe(24), now, now + self.lifetime)
        answer = {"token_type": "Bearer", "access_token": issued.token, "expires_in": int(self.lifetime)}
        with self.lock:
            self.issued.append(issued)
            if grant == "refresh_token" and client.rotate:
                client.refresh_tokens = {secrets.token_urlsafe(24)}
                answer["refresh_token"] = next(iter(client.refresh_tokens))
        return 200, answer

    def _authenticated(self, client: Client, secret: str | None, form: dict[str, str], endpoint: str) -> bool:
        assertion = form.get("client_assertion")
        if assertion is not None:
            if client.certificate is None or form.get("client_assertion_type") != \
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return False
            key = x509.load_pem_x509_certificate(client.certificate.encode()).public_key()
            audience = f"{self.authority}/oauth2/v2.0/token" if endpoint == "microsoft" else self.token_url
            try:
                claims = jwt.decode(assertion, key, algorithms=["RS256", "PS256"], audience=audience,
                                    options={"require": ["exp", "iss", "sub", "aud"]})
            except jwt.PyJWTError:
                return False
            return claims["iss"] == claims["sub"] == client.client_id
        return client.secret is not None and secret is not None and secrets.compare_digest(secret, client.secret)

    def introspect(self, token: str) -> dict:
        issued = self.active(token)
        with self.lock:
            self.introspections.append((token, issued is not None))
        return {"active": True, "username": issued.user, "client_id": issued.client_id} if issued else {"active": False}


def _handler(provider: TokenProvider):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", self.path.split("?")[0])
            self._send(*provider.discovery(found.group(1))) if found else self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
            path = self.path.split("?")[0]
            if path == f"/{TENANT}/oauth2/v2.0/token":
                self._send(*provider.token("microsoft", form, self.headers.get("Authorization")))
            elif path == "/generic/token":
                self._send(*provider.token("generic", form, self.headers.get("Authorization")))
            elif path == "/introspect":
                self._send(200, provider.introspect(form.get("token", "")))
            else:
                self._send(404, {"error": "not_found"})

        def _send(self, status: int, answer: dict) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


# --- Dovecot with the oauth2 passdb --------------------------------------------------------------

class OAuthDovecot(DovecotServer):
    """The sandbox Dovecot plus an oauth2 passdb asking `introspection_url` (RFC 7662, POST) for
    every XOAUTH2 / OAUTHBEARER login; password logins (the tests' own) still work."""

    label = "Dovecot (oauth2)"

    def __init__(self, directory, introspection_url: str, mechanisms: str = "xoauth2 oauthbearer") -> None:
        super().__init__(directory)
        self.introspection_url, self.mechanisms = introspection_url, mechanisms

    def _command(self) -> list[str]:
        command = super()._command()
        conf, ext = self.directory / "dovecot.conf", self.directory / "dovecot-oauth2.conf.ext"
        ext.write_text(f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
                       "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                       "force_introspection = yes\n")
        text = conf.read_text().replace("auth_mechanisms = plain login", f"auth_mechanisms = plain login {self.mechanisms}")
        # The process titles say what each session is doing ("IDLE"): the tests look.
        conf.write_text(text + f"verbose_proctitle = yes\npassdb {{\n  driver = oauth2\n  mechanisms = {self.mechanisms}\n"
                        f"  args = {ext}\n}}\n")
        if os.geteuid() == 0:
            os.chown(ext, *self._ids)
        return command

    def sessions(self, user: str) -> dict[int, str]:
        """The imap processes serving `user`: pid -> process title ("... IDLE]" while idling)."""
        out = {}
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if title.startswith("dovecot/imap [") and f"[{user} " in title:
                out[int(cmdline.parent.name)] = title
        return out

    def kick(self, user: str) -> list[int]:
        """End `user`'s sessions as a server does at token expiry: the imap processes are told to
        stop (SIGTERM: they say BYE and close)."""
        pids = list(self.sessions(user))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return pids


# --- SMTP with XOAUTH2 -------------------------------------------------------------------------

class OAuthSmtp(LocalSmtp):
    """LocalSmtp that requires AUTH XOAUTH2 (no PLAIN or LOGIN) with a token the provider issued
    for the user who signs in; `logins` records (user, token, accepted)."""

    def __init__(self, imap_host: str, imap_port: int, provider: TokenProvider, **kwargs) -> None:
        super().__init__(imap_host, imap_port, **kwargs)
        self.provider = provider
        self.logins: list[tuple[str, str, bool]] = []

    def start(self) -> OAuthSmtp:
        if self._controller is not None:
            return self
        if self._port is None:
            self._port = free_port(self._host)
        controller = Controller(_XOAuth2Handler(self), hostname=self._host, port=self._port,
                                server_hostname="sandbox.localhost", auth_required=True, auth_require_tls=False,
                                auth_exclude_mechanism=["LOGIN", "PLAIN"])
        controller.start()
        self._controller = controller
        return self

    def check(self, user: str, token: str) -> bool:
        issued = self.provider.active(token)
        ok = issued is not None and issued.user == user
        with self._lock:
            self.logins.append((user, token, ok))
        return ok


class _XOAuth2Handler(_Handler):
    async def auth_XOAUTH2(self, server, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        if not isinstance(blob, bytes):
            return AuthResult(success=False, handled=True)  # the client aborted: answered already
        fields = dict(part.split("=", 1) for part in blob.decode(errors="replace").split("\1") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if self.owner.check(user, token):
            return AuthResult(success=True, auth_data=user)
        # As Gmail and Microsoft do: the error as a challenge, then 535 after the client's empty line.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False)
