"""OAuth2 sign-in, for real on loopback: tokens from a token endpoint (through MSAL for the
Microsoft shape, authlib for the generic one) over HTTPS, Dovecot checking them with its oauth2
passdb against the provider's introspection endpoint, aiosmtpd taking AUTH XOAUTH2."""

import asyncio
import email
import email.policy
import itertools
import logging
import secrets
import shutil
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from mailworld import WL, World, form_mail, purpose, wait_for
from oauth_servers import OAuthDovecot, OAuthSmtp, TokenProvider, client_certificate
from sqlmodel import select

from mailbot.config import OAuth2, load_settings, parse_settings
from mailbot.errors import ConfigError, CredentialsRefused, TokenUnavailable
from mailbot.store.models import FolderState, OutboxMail
from mailbot.transport.oauth import (
    MsalClientCredentials,
    OAuth2ClientSource,
    OAuthLogin,
    TokenSources,
    imap_login,
    smtp_login,
)
from mailbot.transport.sandbox import dovecot_available

pytestmark = pytest.mark.integration  # servers or processes in every test

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"

GOOGLE_SCOPE = "https://mail.google.com/"
_serial = itertools.count(1)


@pytest.fixture(scope="module")
def provider():
    directory = Path(tempfile.mkdtemp(prefix="mailbot-oauth-"))
    server = TokenProvider(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def provider_reset(provider):
    provider.lifetime, provider.fail_with, provider.delay = 3600.0, None, 0.0
    yield


def _dovecot(provider, mechanisms):
    if not dovecot_available():
        pytest.skip("Dovecot is not installed (Debian package dovecot-imapd)")
    directory = tempfile.mkdtemp(prefix="mailbot-dovecot-oauth-")  # not tmp_path: nobody must enter it as root
    server = OAuthDovecot(directory, provider.introspection_url, mechanisms)
    server.start()
    return server, directory


@pytest.fixture(scope="module")
def oauth_dovecot(provider):
    server, directory = _dovecot(provider, "xoauth2 oauthbearer")
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def new_user(dovecot) -> tuple[str, str]:
    """A fresh mailbox; its password is only for the tests' own logins (APPEND, delivery)."""
    name, password = f"o{next(_serial)}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    dovecot.add_user(name, password)
    return name, password


def microsoft(provider, client_id, secret_env, **more) -> OAuth2:
    return OAuth2(provider="microsoft", client_id=client_id, client_secret_env=secret_env, tenant="contoso.example",
                  authority=provider.authority, ca_file=provider.ca_file, **more)


def app(provider, monkeypatch, user, **more) -> tuple[str, str]:
    """An app registration granted `user`'s mailbox, its secret in an environment variable."""
    client_id, secret = f"app-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    provider.add_client(client_id, user, secret=secret, **more)
    env = f"TEST_SECRET_{client_id.upper().replace('-', '_')}"
    monkeypatch.setenv(env, secret)
    return client_id, env


# --- the token sources against the token endpoint -------------------------------------------

def test_microsoft_token_renewed_before_it_expires(provider, monkeypatch):
    provider.lifetime = 4.0
    client_id, env = app(provider, monkeypatch, "someone")
    source = MsalClientCredentials(microsoft(provider, client_id, env, renew_before_seconds=1.5), "mailboxes.worldline.imap")
    first = source.token()
    assert source.token() == first and len(provider.tokens_of(client_id)) == 1  # kept in memory
    time.sleep(2.8)  # past the renewal point (2.5 s), before the expiry (4 s)
    assert provider.active(first) is not None
    second = source.token()
    assert second != first and len(provider.tokens_of(client_id)) == 2
    assert provider.active(first) is not None, "renewed while the old token was still valid"


def test_concurrent_logins_share_one_renewal(provider, monkeypatch):
    provider.delay = 0.3  # each token request takes a while: the callers overlap
    client_id, env = app(provider, monkeypatch, "someone")
    source = MsalClientCredentials(microsoft(provider, client_id, env), "mailboxes.worldline.imap")
    start, got = threading.Barrier(8), []

    def login():
        start.wait()
        got.append(source.token())

    threads = [threading.Thread(target=login) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and len(set(got)) == 1
    assert [r for r in provider.requests if r[1] == client_id] == [("microsoft", client_id, "issued")]


def test_microsoft_with_a_certificate(provider, tmp_path):
    """The client assertion MSAL signs with the certificate's key is checked by the provider."""
    pem = tmp_path / "mailbot.pem"
    provider.add_client("app-cert", "someone", certificate=client_certificate(pem, "app-cert"))
    cfg = OAuth2(provider="microsoft", client_id="app-cert", certificate_file=pem, tenant="contoso.example",
                 authority=provider.authority, ca_file=provider.ca_file)
    token = MsalClientCredentials(cfg, "smtp").token()
    assert provider.active(token).client_id == "app-cert"
    other = tmp_path / "other.pem"
    client_certificate(other, "app-cert")  # another key than the one registered
    with pytest.raises(CredentialsRefused, match="invalid_client"):
        MsalClientCredentials(cfg.model_copy(update={"certificate_file": other}), "smtp").token()


def test_generic_refresh_token_as_google(provider, monkeypatch):
    """Google's shape: client id and secret, a refresh token, scope https://mail.google.com/. This
    provider rotates refresh tokens: the renewal must use the new one (the old is revoked)."""
    provider.lifetime = 1.0
    provider.add_client("goog-1", "someone", secret="g-secret", refresh_token="1//rt-first", rotate=True)
    monkeypatch.setenv("TEST_G_SECRET", "g-secret")
    monkeypatch.setenv("TEST_G_REFRESH", "1//rt-first")
    cfg = OAuth2(provider="generic", client_id="goog-1", client_secret_env="TEST_G_SECRET",
                 refresh_token_env="TEST_G_REFRESH", token_url=provider.token_url, scope=GOOGLE_SCOPE,
                 ca_file=provider.ca_file)
    source = OAuth2ClientSource(cfg, "mailboxes.bosa.imap")
    first = source.token()
    time.sleep(0.6)
    second = source.token()
    assert first != second and [r[2] for r in provider.requests if r[1] == "goog-1"] == ["issued", "issued"]
    provider.clients["goog-1"].refresh_tokens.clear()  # revoked by the user or an admin
    time.sleep(0.6)
    with pytest.raises(CredentialsRefused, match="invalid_grant: Token has been expired or revoked"):
        source.token()


def test_generic_client_credentials_with_a_certificate(provider, tmp_path):
    pem = tmp_path / "key.pem"
    provider.add_client("svc-1", "someone", certificate=client_certificate(pem, "svc-1"))
    cfg = OAuth2(provider="generic", client_id="svc-1", certificate_file=pem, token_url=provider.token_url,
                 scope=GOOGLE_SCOPE, ca_file=provider.ca_file)
    assert provider.active(OAuth2ClientSource(cfg, "smtp").token()).client_id == "svc-1"


def test_wrong_secret_one_clear_error_and_slow_retries(provider, monkeypatch, caplog):
    """Logins asking in a tight loop reach the provider only at 0, 0.5, 1.5, 3.5 s...; the log
    says it once, with the mailbox and the provider's answer."""
    client_id, env = app(provider, monkeypatch, "someone")
    monkeypatch.setenv(env, "not-the-secret")
    source = MsalClientCredentials(microsoft(provider, client_id, env, retry_seconds=0.5), "mailboxes.bosa.imap")
    login = OAuthLogin(source, "mailboxes.bosa.imap", "imap.example.net")
    caplog.set_level(logging.INFO, logger="mailbot")
    tries, end = 0, time.monotonic() + 3.0
    while time.monotonic() < end:
        tries += 1
        with pytest.raises(CredentialsRefused) as refused:
            login.token()
    asked = [r for r in provider.requests if r[1] == client_id]
    assert tries > 1000 and 3 <= len(asked) <= 4 and {r[2] for r in asked} == {"invalid_client"}
    message = str(refused.value)
    assert message.startswith("mailboxes.bosa.imap: ") and "AADSTS7000215: Invalid client secret provided" in message
    assert "Trace ID" not in message  # one line
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].credentials == "mailboxes.bosa.imap" and "AADSTS7000215" in errors[0].reason
    assert login.refused == message


def test_unknown_tenant_is_named(provider, monkeypatch):
    client_id, env = app(provider, monkeypatch, "someone")
    cfg = microsoft(provider, client_id, env).model_copy(update={"authority": f"{provider.base}/no-such-tenant"})
    with pytest.raises(CredentialsRefused, match="no-such-tenant is not a usable authority"):
        MsalClientCredentials(cfg, "smtp").token()


def test_provider_down_the_valid_token_still_serves(provider, monkeypatch):
    provider.lifetime = 2.0
    client_id, env = app(provider, monkeypatch, "someone")
    source = MsalClientCredentials(microsoft(provider, client_id, env, renew_before_seconds=1), "smtp")
    first = source.token()
    provider.fail_with = (503, "temporarily_unavailable")
    time.sleep(1.2)  # renewal due, but the provider fails: the old token is still valid
    assert source.token() == first
    time.sleep(1.5)  # expired now
    with pytest.raises(TokenUnavailable, match="failed: HTTP Error: 503"):
        source.token()


def test_missing_secret_is_a_config_error(provider, monkeypatch):
    monkeypatch.delenv("TEST_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match="TEST_NOT_SET is not set"):
        MsalClientCredentials(microsoft(provider, "x", "TEST_NOT_SET"), "smtp")


@pytest.mark.parametrize("section, words", [
    ({"auth": "oauth2"}, 'auth = "oauth2" needs an oauth2 section'),
    ({"oauth2": {"provider": "generic", "client_id": "c", "token_url": "https://t.example/token",
                 "scope": GOOGLE_SCOPE, "refresh_token_env": "R"}}, 'set auth = "oauth2"'),
    ({"auth": "oauth2", "oauth2": {"provider": "microsoft", "client_id": "c", "client_secret_env": "S"}},
     "needs tenant"),
    ({"auth": "oauth2", "oauth2": {"provider": "generic", "client_id": "c", "token_url": "http://t.example/token",
                                   "scope": GOOGLE_SCOPE, "refresh_token_env": "R"}}, "must be an https:// address"),
    ({"auth": "oauth2", "password_env": "P", "oauth2": {"provider": "microsoft", "client_id": "c", "tenant": "t",
                                                         "client_secret_env": "S"}}, "password_env and password_file"),
])
def test_oauth2_config_mistakes(section, words):
    imap = {"host": "outlook.office365.com", "user": "ecom@worldline.localhost", **section}
    with pytest.raises(ConfigError, match=words):
        parse_settings({"mailboxes": {"worldline": {"address": "ecom@worldline.localhost", "imap": imap},
                                      "bosa": {"address": "sm@bosa.localhost"}}})


def test_example_config_sections():
    """The Microsoft sections of config.example.toml are live; its Google one is commented out
    (BOSA's provider is not known): both must stay valid."""
    example = load_settings(EXAMPLE)
    wl = example.mailboxes["worldline"].imap
    assert wl.auth == example.smtp.auth == "oauth2" and wl.oauth2 == example.smtp.oauth2
    assert wl.oauth2.token_scope == "https://outlook.office365.com/.default"
    text = (EXAMPLE).read_text()
    block = text.split("# [mailboxes.bosa.imap.oauth2]\n", 1)[1].split("\n\n", 1)[0]
    google = tomllib.loads("\n".join(line.removeprefix("# ") for line in block.splitlines()))
    imap = {"host": "imap.gmail.com", "user": "sm@bosa.localhost", "auth": "oauth2", "oauth2": google}
    settings = parse_settings({"mailboxes": {"worldline": {"address": "ecom@worldline.localhost"},
                                             "bosa": {"address": "sm@bosa.localhost", "imap": imap}}})
    assert settings.mailboxes["bosa"].imap.oauth2.scope == GOOGLE_SCOPE


def test_same_credentials_share_one_source(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "secret").chmod(0o600)  # a secret file others may read is refused
    sources = TokenSources()
    cfg = {"host": "outlook.office365.com", "user": "ecom@worldline.localhost", "auth": "oauth2",
           "oauth2": {"provider": "microsoft", "client_id": "c", "tenant": "t",
                      "client_secret_file": str(tmp_path / "secret")}}
    settings = parse_settings({"mailboxes": {"worldline": {"address": "ecom@worldline.localhost", "imap": cfg},
                                             "bosa": {"address": "sm@bosa.localhost"}},
                               "smtp": {**cfg, "host": "smtp.office365.com"}})
    imap = sources.credential(settings.mailboxes["worldline"].imap, "mailboxes.worldline.imap", "outlook.office365.com")
    smtp = sources.credential(settings.smtp, "smtp", "smtp.office365.com")
    assert imap.source is smtp.source and imap.where != smtp.where


# --- the login steps against Dovecot and aiosmtpd -------------------------------------------

def test_imap_oauthbearer_where_offered_else_xoauth2(provider, oauth_dovecot, monkeypatch):
    user, _ = new_user(oauth_dovecot)
    client_id, env = app(provider, monkeypatch, user)
    login = OAuthLogin(MsalClientCredentials(microsoft(provider, client_id, env), "mailboxes.worldline.imap"),
                       "mailboxes.worldline.imap", oauth_dovecot.host)
    xoauth2_only, directory = _dovecot(provider, "xoauth2")
    try:
        xoauth2_only.add_user(user, "unused-password")
        for server, mechanism in ((oauth_dovecot, "OAUTHBEARER"), (xoauth2_only, "XOAUTH2")):
            with IMAPClient(server.host, port=server.port, ssl=False, timeout=10) as client:
                imap_login(client, user, login)
                assert client.select_folder("INBOX")[b"EXISTS"] == 0
            log = server.log_path.read_text()
            assert f"Login: user=<{user}>, method={mechanism}" in log
    finally:
        xoauth2_only.stop()
        shutil.rmtree(directory, ignore_errors=True)
    assert [active for token, active in provider.introspections if token == login.source.token()] == [True, True]


def test_imap_revoked_token_is_refused_then_replaced(provider, oauth_dovecot, monkeypatch):
    user, _ = new_user(oauth_dovecot)
    client_id, env = app(provider, monkeypatch, user)
    login = OAuthLogin(MsalClientCredentials(microsoft(provider, client_id, env), "mailboxes.worldline.imap"),
                       "mailboxes.worldline.imap", oauth_dovecot.host)
    first = login.token()
    provider.revoke(first)
    with IMAPClient(oauth_dovecot.host, port=oauth_dovecot.port, ssl=False, timeout=10) as client:
        with pytest.raises(CredentialsRefused) as refused:
            imap_login(client, user, login)
    assert "refused the OAuth2 token: OAUTHBEARER [AUTHENTICATIONFAILED]" in str(refused.value)
    assert login.refused == str(refused.value)
    with IMAPClient(oauth_dovecot.host, port=oauth_dovecot.port, ssl=False, timeout=10) as client:
        imap_login(client, user, login)  # a new token, asked for because the server refused the old one
    assert len(provider.tokens_of(client_id)) == 2 and login.refused is None


def test_smtp_xoauth2(provider, oauth_dovecot, monkeypatch):
    user, _ = new_user(oauth_dovecot)
    client_id, env = app(provider, monkeypatch, user)
    login = OAuthLogin(MsalClientCredentials(microsoft(provider, client_id, env), "smtp"), "smtp", "127.0.0.1")
    server = OAuthSmtp(oauth_dovecot.host, oauth_dovecot.port, provider).start()

    async def sign_in(who):
        smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, use_tls=False, start_tls=False)
        await smtp.connect()
        try:
            await smtp_login(smtp, who, login)
        finally:
            smtp.close()

    try:
        asyncio.run(sign_in(user))
        assert server.logins == [(user, login.source.token(), True)]
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            asyncio.run(sign_in("someone-else"))  # the app was not granted that mailbox
        assert refused.value.code == 535 and login.refused.startswith("smtp: 127.0.0.1 refused the OAuth2 token: 535")
    finally:
        server.stop()


# --- the daemon: a mailbox read and answered through OAuth2 -----------------------------------

class OAuthWorld(World):
    """The bot's world on the OAuth2 Dovecot and SMTP: worldline's IMAP and the sender with one
    Microsoft app (one token source), bosa's IMAP with a Google-shaped refresh token."""

    def __init__(self, provider, dovecot, smtp, tmp_path, monkeypatch, renew_before=1.0):
        super().__init__(dovecot, lambda: new_user(dovecot), smtp, tmp_path, monkeypatch)
        wl_user, bosa_user = self.users["worldline"][0], self.users["bosa"][0]
        self.wl_app, env = app(provider, monkeypatch, wl_user)
        self.bosa_app = f"goog-{secrets.token_hex(3)}"
        provider.add_client(self.bosa_app, bosa_user, secret="g-secret", refresh_token="1//bosa")
        monkeypatch.setenv("TEST_BOSA_G_SECRET", "g-secret")
        monkeypatch.setenv("TEST_BOSA_REFRESH", "1//bosa")
        self.wl_oauth = microsoft(provider, self.wl_app, env, renew_before_seconds=renew_before,
                                  retry_seconds=1).model_dump(mode="json", exclude_none=True)
        bosa_oauth = {"provider": "generic", "client_id": self.bosa_app, "client_secret_env": "TEST_BOSA_G_SECRET",
                      "refresh_token_env": "TEST_BOSA_REFRESH", "token_url": provider.token_url, "scope": GOOGLE_SCOPE,
                      "ca_file": str(provider.ca_file), "renew_before_seconds": renew_before}
        for box, oauth in (("worldline", self.wl_oauth), ("bosa", bosa_oauth)):
            imap = self.data["mailboxes"][box]["imap"]
            imap.pop("password_env")
            imap.update(auth="oauth2", oauth2=oauth)
        self.data["smtp"].update(user=wl_user, auth="oauth2", oauth2=dict(self.wl_oauth))  # equal: one source
        self.settings = parse_settings(self.data)

    def start(self, connected=True):
        if connected:
            return super().start()
        from mailbot.daemon import Daemon

        self.bot = Daemon(self.settings, with_scheduler=False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(self.bot.serve()), daemon=True)
        self.thread.start()


@pytest.fixture
def oauth_world(provider, oauth_dovecot, tmp_path, monkeypatch):
    smtp = OAuthSmtp(oauth_dovecot.host, oauth_dovecot.port, provider).start()
    w = OAuthWorld(provider, oauth_dovecot, smtp, tmp_path, monkeypatch)
    yield w
    w.stop()
    smtp.stop()


@pytest.fixture(autouse=True)
def bot_log(caplog):
    caplog.set_level(logging.INFO, logger="mailbot")


def idle_sessions(dovecot, user):
    return {pid for pid, title in dovecot.sessions(user).items() if title.endswith("IDLE]")}


def test_read_and_answered_through_oauth2_renewed_across_idle(oauth_world, provider, oauth_dovecot):
    """Tokens live 3 s. The bot reads and answers a mail (IMAP OAUTHBEARER, SMTP XOAUTH2), goes
    back to IDLE, and stays there on tokens that have all expired (Dovecot checks a token only
    at login). The server then closes the IDLE sessions, as Exchange does at token expiry: the
    bot logs in again with a renewed token -- the old one Dovecot now refuses -- and the next
    mail arrives through IDLE on the new session and is answered."""
    w = oauth_world
    provider.lifetime = 3.0
    wl_user = w.users["worldline"][0]
    w.start()
    w.append("worldline", form_mail(1).to_bytes())
    wait_for(lambda: w.answers(), timeout=20, what="the first answer")
    wait_for(lambda: len(idle_sessions(oauth_dovecot, wl_user)) == 2, what="INBOX and Sent watchers in IDLE")
    before = idle_sessions(oauth_dovecot, wl_user)

    issued = provider.tokens_of(w.wl_app)
    time.sleep(max(i.expires for i in issued) - time.monotonic() + 0.2)
    assert all(provider.active(i.token) is None for i in issued)
    assert idle_sessions(oauth_dovecot, wl_user) == before, "Dovecot keeps sessions on expired tokens"
    with IMAPClient(oauth_dovecot.host, port=oauth_dovecot.port, ssl=False, timeout=10) as probe:
        with pytest.raises(LoginError):
            probe.oauth2_login(wl_user, issued[-1].token)  # a re-login with an old token would fail

    kicked_at = time.monotonic()
    assert set(oauth_dovecot.kick(wl_user)) >= before
    wait_for(lambda: len(idle_sessions(oauth_dovecot, wl_user) - before) == 2, timeout=20,
             what="the watchers back in IDLE on new sessions")
    renewed = [i for i in provider.tokens_of(w.wl_app) if i.at > kicked_at]
    assert renewed, "a token was renewed for the re-login"
    assert any(active and token in {i.token for i in renewed} for token, active in provider.introspections)

    w.append("worldline", form_mail(2, project="Parking").to_bytes())
    wait_for(lambda: len(w.answers()) == 2, timeout=20, what="the second answer")
    assert [purpose(e) for e in w.answers()] == ["form_complete", "form_complete"]
    assert w.smtp.logins and all(ok for _, _, ok in w.smtp.logins)
    assert {token for _, token, _ in w.smtp.logins} <= {i.token for i in provider.tokens_of(w.wl_app)}
    # bosa's mailbox signed in through the generic client (refresh token), never refused
    assert provider.tokens_of(w.bosa_app) and not any(r[2] != "issued" for r in provider.requests if r[1] == w.bosa_app)
    # a handful of tokens, not a storm: logins at start, for the sender, the Sent copy, after the kick
    assert len(provider.tokens_of(w.wl_app)) <= 8


def test_wrong_secret_alerts_staff_and_retries_slowly(oauth_world, provider, monkeypatch, caplog):
    """worldline's IMAP app has a wrong secret (the sender has its own, right one): one error
    line naming the mailbox and Entra ID's answer, a watchdog mail to staff at once, the token
    endpoint asked a few times (1, 2, 4 s apart), never in a loop; once the secret is right
    again the mailbox is read and staff are told."""
    w = oauth_world
    smtp_app, smtp_env = app(provider, monkeypatch, w.users["worldline"][0])
    w.configure(smtp={"oauth2": {"client_id": smtp_app, "client_secret_env": smtp_env}},
                # The watchdog looks every 6 s; silence alone would need 12 s (the watchers report
                # contact every 3 s).
                daemon={"watchdog_minutes": 0.2, "idle_minutes": 0.05})
    monkeypatch.setenv(w.wl_oauth["client_secret_env"], "expired-secret-value")
    started = time.monotonic()
    w.start(connected=False)

    def alerts():
        return [email.message_from_bytes(e.data, policy=email.policy.default) for e in w.answers(WL)
                if purpose(e) == "watchdog"]

    wait_for(lambda: alerts(), timeout=12, what="the watchdog's alert")
    assert time.monotonic() - started < 12, "reported for the refusal, not for the silence"
    subjects = {m["Subject"] for m in alerts()}
    # in the team's language (worldline's is French here)
    assert subjects <= {f"[mailbot] Connexion refusée à la boîte mail : worldline ({f})" for f in ("INBOX", "Sent")}
    body = alerts()[0].get_body(("plain",)).get_content()
    assert "AADSTS7000215: Invalid client secret provided" in body

    elapsed = time.monotonic() - started
    asked = [r for r in provider.requests if r[1] == w.wl_app]
    # At 0, 1, 3, 7, 15 s... (retry_seconds = 1, doubling): a handful, whatever the watchers do.
    assert 2 <= len(asked) <= 2 + int(elapsed).bit_length()
    assert {r[2] for r in asked} == {"invalid_client"}
    refused = [r for r in caplog.records if r.getMessage() == "sign-in refused"]
    assert [r.credentials for r in refused] == ["mailboxes.worldline.imap"]
    assert "mailboxes.worldline.imap: the token endpoint" in refused[0].reason and "AADSTS7000215" in refused[0].reason
    bosa = [r for r in caplog.records if getattr(r, "credentials", "").startswith("mailboxes.bosa")]
    assert not [r for r in bosa if r.levelno >= logging.WARNING]

    provider.clients[w.wl_app].secret = "expired-secret-value"  # the admin puts the new secret in place
    wait_for(lambda: w.connected(), timeout=40, what="the mailbox read again")
    # Each folder is told back up on its own watchdog round (INBOX may answer a round before Sent).
    def none_down():
        with w.session() as s:
            return not any(row.reported_down for row in s.exec(select(FolderState)))

    def each_told_back_up():
        told = [m["Subject"] for m in alerts()]
        down = {s.replace("Connexion refusée à la boîte mail", "La boîte mail répond à nouveau")
                for s in told if "Connexion refusée" in s}
        return down == {s for s in told if "répond à nouveau" in s}

    wait_for(none_down, timeout=25, what="no folder reported down")
    wait_for(each_told_back_up, timeout=10, what="staff told each folder works again")
    assert [r.getMessage() for r in caplog.records if getattr(r, "credentials", None) == "mailboxes.worldline.imap"
            and r.getMessage().startswith("sign-in")] == ["sign-in refused", "sign-in accepted again"]
    with w.session() as s:
        assert not s.exec(select(OutboxMail).where(OutboxMail.state == "failed")).all()


def test_smtp_password_login_still_works(oauth_dovecot):
    """smtp_login with a password (auth = "password"): AUTH PLAIN/LOGIN as before."""
    from mailbot.transport.sandbox import LocalSmtp

    server = LocalSmtp(oauth_dovecot.host, oauth_dovecot.port, auth=("bot", "right-password")).start()

    async def sign_in(password):
        smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, use_tls=False, start_tls=False)
        await smtp.connect()
        try:
            await smtp_login(smtp, "bot", password)
        finally:
            smtp.close()

    try:
        asyncio.run(sign_in("right-password"))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            asyncio.run(sign_in("wrong-password"))
    finally:
        server.stop()
