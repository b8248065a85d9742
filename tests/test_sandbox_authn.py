"""The sandbox SMTP server stamps Authentication-Results as a receiving server does, and the bot's
reader believes it: pure stamping rules, then real aiosmtpd delivering into a real Dovecot."""

import asyncio
import email

import aiosmtplib
import pytest

from mailbot.config import load_settings
from mailbot.mail.authn import AuthStatus, authenticate_sender
from mailbot.mail.parse import parse_mail
from mailbot.resources import SANDBOX_CONFIG
from mailbot.transport.stamp import AUTHSERV_ID, results_header, stamp, without_own_results

SANDBOX = load_settings(SANDBOX_CONFIG).mailboxes["worldline"].authentication
WL = "ecom-belgium@worldline.localhost"


def message(sender: str, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return (f"{head}From: Marie Dubois <{sender}>\r\nTo: {WL}\r\nSubject: Bon de commande\r\n"
            f"Message-ID: <s1@sambreville.be>\r\n\r\nBonjour,\r\n").encode()


def verdict(raw: bytes):
    return authenticate_sender(raw, [a.email for a in parse_mail(raw).from_all], SANDBOX)


# --- the rule, pure -----------------------------------------------------------------------

def test_sandbox_configuration_trusts_the_stamp():
    assert SANDBOX.authserv_ids == (AUTHSERV_ID,) and SANDBOX.unstamped == "unauthenticated"


@pytest.mark.parametrize("mail_from, expected", [
    ("marie.dubois@sambreville.be", "spf=pass smtp.mailfrom=sambreville.be; dkim=none; dmarc=pass"),
    ("bounces@mail.sambreville.be", "spf=pass smtp.mailfrom=mail.sambreville.be; dkim=none; dmarc=pass"),
    ("x@attacker-host.com", "spf=pass smtp.mailfrom=attacker-host.com; dkim=none; dmarc=fail"),
    ("", "spf=none (null or unusable sender); dkim=none; dmarc=fail"),
])
def test_loopback_rule(mail_from, expected):
    header = results_header(message("marie.dubois@sambreville.be"), mail_from).decode()
    assert header.startswith(f"Authentication-Results: {AUTHSERV_ID}; {expected}")
    assert header.endswith("header.from=sambreville.be\r\n")


def test_several_from_addresses_are_a_permerror():
    raw = b"From: a@sambreville.be, b@sambreville.be\r\nSubject: x\r\n\r\nbody\r\n"
    assert b"dmarc=permerror" in results_header(raw, "a@sambreville.be")


def test_only_top_level_headers_claiming_the_sandbox_are_removed():
    raw = message("marie.dubois@sambreville.be",
                  "Authentication-Results: Sandbox.Localhost;\r\n dmarc=pass header.from=bosa.localhost",
                  "Authentication-Results: mx.google.com; dmarc=pass header.from=sambreville.be",
                  "Authentication-Results: sandbox.localhost.attacker-host.com; none")
    raw += b"Authentication-Results: sandbox.localhost; in the body, left alone\r\n"
    out = without_own_results(raw)
    assert b"bosa.localhost" not in out and out.count(b"Authentication-Results") == 3
    assert out.endswith(b"Bonjour,\r\nAuthentication-Results: sandbox.localhost; in the body, left alone\r\n")
    assert without_own_results(out) == out


def test_stamped_mail_reads_as_the_bot_reads_it():
    assert verdict(stamp(message("marie.dubois@sambreville.be"), "marie.dubois@sambreville.be")).status \
        is AuthStatus.PASS
    forged = message("marie.dubois@sambreville.be",
                     "Authentication-Results: sandbox.localhost; dmarc=pass header.from=sambreville.be")
    auth = verdict(stamp(forged, "x@attacker-host.com"))
    assert (auth.status, auth.reason) == (AuthStatus.FAIL, "DMARC fail for sambreville.be at sandbox.localhost")


# --- real aiosmtpd into real Dovecot ------------------------------------------------------

def delivered(local_smtp, imap_user, imap_connect, raw: bytes, mail_from: str) -> bytes:
    local_smtp.add_mailbox(WL, *imap_user)
    asyncio.run(aiosmtplib.send(raw, sender=mail_from, recipients=[WL], hostname=local_smtp.host,
                                port=local_smtp.port, start_tls=False))
    client = imap_connect(*imap_user)
    client.select_folder("INBOX", readonly=True)
    [uid] = client.search()
    return client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]


def test_aligned_from_arrives_stamped_pass(local_smtp, imap_user, imap_connect):
    got = delivered(local_smtp, imap_user, imap_connect, message("marie.dubois@sambreville.be"),
                    "marie.dubois@sambreville.be")
    parsed = email.message_from_bytes(got)
    assert parsed.get_all("Authentication-Results") == [
        "sandbox.localhost; spf=pass smtp.mailfrom=sambreville.be; dkim=none; dmarc=pass header.from=sambreville.be"]
    auth = verdict(got)
    assert (auth.status, auth.method, auth.authenticated) == (AuthStatus.PASS, "dmarc", True)


def test_forged_from_arrives_stamped_fail(local_smtp, imap_user, imap_connect):
    got = delivered(local_smtp, imap_user, imap_connect, message("marie.dubois@sambreville.be"),
                    "bounce@attacker-host.com")
    assert b"dmarc=fail (From not aligned with MAIL FROM) header.from=sambreville.be" in got
    auth = verdict(got)
    assert (auth.status, auth.authenticated) == (AuthStatus.FAIL, False)


def test_sender_written_sandbox_header_is_removed(local_smtp, imap_user, imap_connect):
    forged = message("ecom-belgium@worldline.localhost",
                     "Authentication-Results: sandbox.localhost; spf=pass smtp.mailfrom=worldline.localhost;"
                     " dmarc=pass header.from=worldline.localhost",
                     "Authentication-Results: sandbox.localhost (again);\r\n\tdkim=pass header.d=worldline.localhost")
    got = delivered(local_smtp, imap_user, imap_connect, forged, "x@attacker-host.com")
    values = email.message_from_bytes(got).get_all("Authentication-Results")
    assert len(values) == 1 and "dmarc=fail" in values[0] and "attacker-host.com" in values[0]
    assert b"dkim=pass" not in got and b"(again)" not in got
    assert verdict(got).status is AuthStatus.FAIL
    # the envelope keeps what was received, as sent
    assert b"(again)" in local_smtp.envelopes[-1].data
