"""Sender authentication from Authentication-Results, with the header shapes real servers write."""

import pytest
from hypothesis import given, settings, strategies as st

from mailbot.config import SenderAuthentication, parse_settings
from mailbot.errors import ConfigError
from mailbot.mail.authn import AuthStatus, aligned, authenticate_sender, organisational_domain

GMAIL = SenderAuthentication(authserv_ids=("mx.google.com",))
EXO = SenderAuthentication(trust_topmost_without_id=True, entry_hosts=("protection.outlook.com",))
POSTFIX = SenderAuthentication(authserv_ids=("mail.bosa.example.org",))
NOTHING = SenderAuthentication()
MARIE = ["marie.dubois@sambreville.be"]

BODY = (b"From: Marie Dubois <marie.dubois@sambreville.be>\r\nTo: ecom-belgium@worldline.com\r\n"
        b"Subject: Bon de commande\r\nMessage-ID: <a1@sambreville.be>\r\n\r\nBonjour,\r\n")


def mail(*fields: str) -> bytes:
    return "".join(f + "\r\n" for f in fields).encode() + BODY


# Exchange Online, as seen in the mailbox: internal hops above, its header without an
# authserv-id, then Received-SPF and the Received header of the mail's entry.
EXO_TOP = (
    "Received: from DB8PR04MB6987.eurprd04.prod.outlook.com (2603:10a6:10:d8::20) by\r\n"
    " AM9PR04MB8193.eurprd04.prod.outlook.com with HTTPS; Mon, 3 Mar 2025 09:12:03 +0000",
    "Received: from DU2PR04CA0123.eurprd04.prod.outlook.com (2603:10a6:10:230::8) by\r\n"
    " DB8PR04MB6987.eurprd04.prod.outlook.com (2603:10a6:10:d8::20) with Microsoft SMTP\r\n"
    " Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8489.25;\r\n"
    " Mon, 3 Mar 2025 09:12:02 +0000",
    "Received: from DB5PEPF00014B8F.eurprd02.prod.outlook.com\r\n"
    " (2603:10a6:10:230:cafe::2b) by DU2PR04CA0123.outlook.office365.com\r\n"
    " (2603:10a6:10:230::8) with Microsoft SMTP Server; Mon, 3 Mar 2025 09:12:02 +0000",
)
EXO_ENTRY = (
    "Received-SPF: Pass (protection.outlook.com: domain of sambreville.be designates\r\n"
    " 40.107.22.50 as permitted sender) receiver=protection.outlook.com;\r\n"
    " client-ip=40.107.22.50; helo=EUR05-AM6-obe.outbound.protection.outlook.com; pr=C",
    "Received: from mail-am6eur05on2050.outbound.protection.outlook.com (40.107.22.50)\r\n"
    " by DB5PEPF00014B8F.mail.protection.outlook.com (10.167.8.203) with Microsoft SMTP\r\n"
    " Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.8489.16 via Frontend\r\n"
    " Transport; Mon, 3 Mar 2025 09:12:01 +0000",
)
EXO_PASS = ("Authentication-Results: spf=pass (sender IP is 40.107.22.50)\r\n"
            " smtp.mailfrom=sambreville.be; dkim=pass (signature was verified)\r\n"
            " header.d=sambreville.be;dmarc=pass action=none\r\n"
            " header.from=sambreville.be;compauth=pass reason=100")
EXO_FAIL = ("Authentication-Results: spf=fail (sender IP is 203.0.113.7)\r\n"
            " smtp.mailfrom=sambreville.be; dkim=none (message not signed)\r\n"
            " header.d=none;dmarc=fail action=oreject\r\n"
            " header.from=sambreville.be;compauth=fail reason=000")
# a sender's own header, the shape it would copy
FORGED_EXO = ("Authentication-Results: spf=pass (sender IP is 40.107.22.50) smtp.mailfrom=sambreville.be;"
              " dkim=pass (signature was verified) header.d=sambreville.be;dmarc=pass action=none"
              " header.from=sambreville.be;compauth=pass reason=100")
# what the attacker's own server writes when it talks to the provider's MX
ATTACKER_ENTRY = ("Received: from mail.attacker-host.com (203.0.113.7) by\r\n"
                  " DB5PEPF00014B8F.mail.protection.outlook.com (10.167.8.203) with Microsoft SMTP\r\n"
                  " Server id 15.20.8489.16 via Frontend Transport; Mon, 3 Mar 2025 09:12:01 +0000")

GMAIL_ENTRY = ("Received: from EUR05-AM6-obe.outbound.protection.outlook.com\r\n"
               "        (mail-am6eur05on2050.outbound.protection.outlook.com. [40.107.22.50])\r\n"
               "        by mx.google.com with ESMTPS id a640c23a62f3a-abf2f4e8b1csi412345966b.12;\r\n"
               "        Mon, 03 Mar 2025 01:12:01 -0800 (PST)")
GMAIL_SPF = ("Received-SPF: pass (google.com: domain of marie.dubois@sambreville.be designates 40.107.22.50"
             " as permitted sender) client-ip=40.107.22.50;")


def gmail_ar(dkim="pass", dmarc="pass", d="sambreville.be", extra="") -> str:
    return ("Authentication-Results: mx.google.com;\r\n"
            f"       dkim={dkim} header.i=@{d} header.s=selector1 header.b=\"Kx3/pQ+z\";\r\n"
            f"{extra}"
            "       spf=pass (google.com: domain of marie.dubois@sambreville.be designates 40.107.22.50 as"
            " permitted sender) smtp.mailfrom=marie.dubois@sambreville.be;\r\n"
            f"       dmarc={dmarc} (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=sambreville.be")


# --- Exchange Online: no authserv-id ------------------------------------------------------

def test_exchange_online_pass():
    auth = authenticate_sender(mail(*EXO_TOP, EXO_PASS, *EXO_ENTRY), MARIE, EXO)
    assert (auth.status, auth.method, auth.domain, auth.authenticated) == (AuthStatus.PASS, "dmarc",
                                                                           "sambreville.be", True)
    assert auth.reason == "DMARC pass for sambreville.be at the receiving server"
    assert auth.server == ""


def test_exchange_online_dmarc_fail():
    auth = authenticate_sender(mail(*EXO_TOP, EXO_FAIL, *EXO_ENTRY), MARIE, EXO)
    assert (auth.status, auth.method, auth.authenticated) == (AuthStatus.FAIL, "dmarc", False)
    assert auth.reason == "DMARC fail for sambreville.be at the receiving server"


def test_exchange_online_sender_header_below_is_not_read():
    # Exchange says fail; the sender's own header, further down, says pass.
    raw = mail(*EXO_TOP, EXO_FAIL, *EXO_ENTRY, FORGED_EXO)
    assert authenticate_sender(raw, MARIE, EXO).status is AuthStatus.FAIL


def test_exchange_online_wrote_nothing_and_the_sender_did():
    # The provider stamped no header: the topmost is the sender's, below the entry Received.
    for entry in (EXO_ENTRY, (ATTACKER_ENTRY,)):
        auth = authenticate_sender(mail(*EXO_TOP, *entry, FORGED_EXO), MARIE, EXO)
        assert (auth.status, auth.authenticated) == (AuthStatus.UNKNOWN_SERVER, False)
        assert "below the Received header of its entry" in auth.reason


def test_exchange_online_sender_imitating_an_entry_server():
    # The attacker's own headers start with a Received "by" a protection.outlook.com name:
    # they still sit below the real entry's Received header.
    fake = ("Received: from localhost (127.0.0.1) by AM0PR04MB1234.mail.protection.outlook.com"
            " with SMTP; Mon, 3 Mar 2025 09:11:00 +0000")
    auth = authenticate_sender(mail(*EXO_TOP, *EXO_ENTRY, fake, FORGED_EXO), MARIE, EXO)
    assert auth.status is AuthStatus.UNKNOWN_SERVER


def test_exchange_online_mail_from_inside_the_organisation():
    # No entry server on the way: the topmost header cannot be told from one a colleague wrote.
    auth = authenticate_sender(mail(*EXO_TOP, FORGED_EXO), MARIE, EXO)
    assert auth.status is AuthStatus.UNKNOWN_SERVER
    assert "no Received header of an entry server" in auth.reason


def test_exchange_online_header_with_an_id_on_top_is_not_the_providers():
    forged = "Authentication-Results: mx.attacker-host.com; dmarc=pass header.from=sambreville.be"
    auth = authenticate_sender(mail(forged, EXO_PASS.replace("dmarc=pass", "dmarc=fail"), *EXO_ENTRY), MARIE, EXO)
    assert auth.status is AuthStatus.UNKNOWN_SERVER


def test_exchange_online_no_dmarc_record_but_aligned_dkim_from_a_subdomain():
    header = ("Authentication-Results: spf=none (sender IP is 40.107.22.50) smtp.mailfrom=sambreville.be;"
              " dkim=pass (signature was verified) header.d=mail.sambreville.be;dmarc=bestguesspass"
              " action=none header.from=sambreville.be;compauth=pass reason=109")
    auth = authenticate_sender(mail(*EXO_TOP, header, *EXO_ENTRY), MARIE, EXO)
    assert (auth.status, auth.method) == (AuthStatus.PASS, "dkim")
    assert auth.reason == "DKIM pass for sambreville.be (signed by mail.sambreville.be) at the receiving server"


def test_exchange_online_bestguesspass_alone_is_not_enough():
    # dmarc=bestguesspass: no DMARC record; compauth=pass is Microsoft's guess. Neither counts.
    header = ("Authentication-Results: spf=pass (sender IP is 40.107.22.50) smtp.mailfrom=sambreville.be;"
              " dkim=none (message not signed) header.d=none;dmarc=bestguesspass action=none"
              " header.from=sambreville.be;")  # the trailing ';' Exchange writes
    auth = authenticate_sender(mail(*EXO_TOP, header, *EXO_ENTRY), MARIE, EXO)
    assert auth.status is AuthStatus.NONE
    assert auth.reason.startswith("No DMARC pass or aligned DKIM pass for sambreville.be")


# --- Gmail: authserv-id mx.google.com ------------------------------------------------------

def test_gmail_pass_through_dmarc():
    auth = authenticate_sender(mail("Delivered-To: ecom.belgium@gmail.com", GMAIL_ENTRY, GMAIL_SPF,
                                    gmail_ar()), MARIE, GMAIL)
    assert (auth.status, auth.method, auth.server) == (AuthStatus.PASS, "dmarc", "mx.google.com")
    assert auth.reason == "DMARC pass for sambreville.be at mx.google.com"


def test_gmail_dmarc_fail():
    auth = authenticate_sender(mail(GMAIL_ENTRY, gmail_ar(dkim="none", dmarc="fail")), MARIE, GMAIL)
    assert auth.status is AuthStatus.FAIL
    assert auth.reason == "DMARC fail for sambreville.be at mx.google.com"


def test_dkim_pass_with_unaligned_domain_is_not_enough():
    # a newsletter service signing with its own domain, and no DMARC verdict
    header = gmail_ar(d="sendgrid.net").replace(
        "       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=sambreville.be", "")
    header = header.rstrip().rstrip(";")
    auth = authenticate_sender(mail(GMAIL_ENTRY, header), MARIE, GMAIL)
    assert auth.status is AuthStatus.NONE and not auth.authenticated


def test_dkim_pass_on_a_lookalike_domain_does_not_align():
    auth = authenticate_sender(mail(GMAIL_ENTRY, gmail_ar(d="sambreville.be.attacker-host.com",
                                                          dmarc="none")), MARIE, GMAIL)
    assert auth.status is AuthStatus.NONE


def test_dmarc_pass_for_another_from_domain_is_not_about_this_mail():
    header = gmail_ar().replace("header.from=sambreville.be", "header.from=attacker-host.com")
    auth = authenticate_sender(mail(GMAIL_ENTRY, header), MARIE, GMAIL)
    assert auth.status is AuthStatus.NONE  # also not through the aligned DKIM pass
    assert auth.reason == "DMARC result at mx.google.com is for attacker-host.com, not sambreville.be"


def test_header_of_an_untrusted_server_is_ignored():
    header = gmail_ar().replace("mx.google.com;", "mx.attacker-host.com;")
    auth = authenticate_sender(mail(GMAIL_ENTRY, header), MARIE, GMAIL)
    assert auth.status is AuthStatus.UNKNOWN_SERVER
    assert auth.reason == "No Authentication-Results from mx.google.com"


@pytest.mark.parametrize("real", [gmail_ar(dkim="none", dmarc="none"), gmail_ar(dkim="none", dmarc="fail")])
def test_forged_header_with_the_trusted_id_below_or_above(real):
    # A server that did not delete a sender's header claiming its id (RFC 8601 §5 says it must):
    # the contradiction is caught, wherever the forged header sits.
    forged = "Authentication-Results: mx.google.com; dmarc=pass header.from=sambreville.be"
    for order in ((real, forged), (forged, real)):
        auth = authenticate_sender(mail(GMAIL_ENTRY, *order), MARIE, GMAIL)
        assert auth.status is AuthStatus.FAIL and not auth.authenticated


def test_forged_dkim_pass_beside_an_unsigned_verdict():
    real = gmail_ar(dkim="none", dmarc="none").replace("header.i=@sambreville.be header.s=selector1 "
                                                       "header.b=\"Kx3/pQ+z\"", "")
    forged = "Authentication-Results: mx.google.com; dkim=pass header.d=sambreville.be"
    auth = authenticate_sender(mail(GMAIL_ENTRY, real, forged), MARIE, GMAIL)
    assert (auth.status, auth.method) == (AuthStatus.FAIL, "dkim")


def test_arc_sealed_forward_is_not_trusted():
    # A mailing list re-sent the mail: DKIM broke, DMARC fails; the ARC chain says the first hop
    # saw a pass, but the list is nobody this mailbox trusts.
    raw = mail(
        "ARC-Seal: i=2; a=rsa-sha256; t=1741000000; cv=pass; d=google.com; s=arc-20240605; b=AbCd==",
        "ARC-Authentication-Results: i=2; mx.google.com; dkim=pass header.i=@sambreville.be;"
        " arc=pass (i=1); dmarc=pass header.from=sambreville.be",
        GMAIL_ENTRY,
        "Authentication-Results: mx.google.com;\r\n"
        "       dkim=fail header.i=@sambreville.be header.s=selector1 header.b=Kx3;\r\n"
        "       arc=pass (i=1 spf=pass spfdomain=sambreville.be dkim=pass dkdomain=sambreville.be"
        " dmarc=pass fromdomain=sambreville.be);\r\n"
        "       spf=pass (google.com: domain of list-bounces@lists.example.org designates 192.0.2.10 as"
        " permitted sender) smtp.mailfrom=list-bounces@lists.example.org;\r\n"
        "       dmarc=fail (p=QUARANTINE sp=QUARANTINE dis=QUARANTINE arc=pass) header.from=sambreville.be",
        "ARC-Authentication-Results: i=1; lists.example.org; dmarc=pass header.from=sambreville.be",
    )
    auth = authenticate_sender(raw, MARIE, GMAIL)
    assert (auth.status, auth.method) == (AuthStatus.FAIL, "dmarc")


def test_arc_authentication_results_alone_count_for_nothing():
    raw = mail(GMAIL_ENTRY, "ARC-Authentication-Results: i=1; mx.google.com; dmarc=pass header.from=sambreville.be")
    assert authenticate_sender(raw, MARIE, GMAIL).status is AuthStatus.UNKNOWN_SERVER


# --- Postfix with OpenDKIM and OpenDMARC: several headers with one authserv-id -------------

POSTFIX_ENTRY = ("Received: from EUR05-AM6-obe.outbound.protection.outlook.com"
                 " (mail-am6eur05on2050.outbound.protection.outlook.com [40.107.22.50])\r\n"
                 "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
                 "\tby mail.bosa.example.org (Postfix) with ESMTPS id 4Z5xYq2k1Nz9sRk\r\n"
                 "\tfor <epayment@bosa.example.org>; Mon,  3 Mar 2025 10:12:01 +0100 (CET)")


def postfix(dmarc: str | None = "pass", dkim: str = "pass", d: str = "sambreville.be") -> bytes:
    fields = []
    if dmarc:
        fields.append(f"Authentication-Results: mail.bosa.example.org; dmarc={dmarc} (p=quarantine dis=none)"
                      " header.from=sambreville.be")
    fields += [
        "Authentication-Results: mail.bosa.example.org;\r\n"
        f"\tdkim={dkim} (2048-bit key; unprotected) header.d={d} header.i=@{d}\r\n"
        "\theader.a=rsa-sha256 header.s=selector1 header.b=Kx3pQzAb",
        "Authentication-Results: mail.bosa.example.org; spf=pass smtp.mailfrom=sambreville.be",
        POSTFIX_ENTRY,
    ]
    return mail("Return-Path: <marie.dubois@sambreville.be>", "Delivered-To: epayment@bosa.example.org", *fields)


def test_postfix_opendmarc_pass_and_fail():
    assert authenticate_sender(postfix(), MARIE, POSTFIX).status is AuthStatus.PASS
    auth = authenticate_sender(postfix(dmarc="fail", dkim="fail"), MARIE, POSTFIX)
    assert auth.status is AuthStatus.FAIL and auth.reason == "DMARC fail for sambreville.be at mail.bosa.example.org"


def test_postfix_without_opendmarc_uses_the_aligned_dkim_result():
    auth = authenticate_sender(postfix(dmarc=None), MARIE, POSTFIX)
    assert (auth.status, auth.method) == (AuthStatus.PASS, "dkim")
    auth = authenticate_sender(postfix(dmarc=None, dkim="fail"), MARIE, POSTFIX)
    assert (auth.status, auth.method) == (AuthStatus.FAIL, "dkim")
    auth = authenticate_sender(postfix(dmarc=None, d="mailchimpapp.net"), MARIE, POSTFIX)
    assert auth.status is AuthStatus.NONE


def test_subdomain_from_aligns_relaxed():
    raw = postfix(dmarc=None, d="sambreville.be")
    auth = authenticate_sender(raw, ["marie.dubois@finances.sambreville.be"], POSTFIX)
    assert (auth.status, auth.domain) == (AuthStatus.PASS, "finances.sambreville.be")


def test_organisational_domains():
    assert organisational_domain("mail.sambreville.be") == "sambreville.be"
    assert organisational_domain("a.b.example.co.uk") == "example.co.uk"
    assert aligned("mail.sambreville.be", "sambreville.be")
    assert not aligned("sambreville.be.attacker-host.com", "sambreville.be")
    # a public suffix: each customer is its own organisation
    assert not aligned("attacker.github.io", "sambreville.github.io")


# --- the From address itself --------------------------------------------------------------

def test_several_or_no_from_addresses_are_not_authenticated():
    raw = mail(GMAIL_ENTRY, gmail_ar())
    auth = authenticate_sender(raw, ["marie.dubois@sambreville.be", "ceo@worldline.com"], GMAIL)
    assert (auth.status, auth.authenticated) == (AuthStatus.FAIL, False)
    assert auth.reason == "The mail has several From addresses"
    auth = authenticate_sender(raw, [], SenderAuthentication(unstamped="believe_from"))
    assert (auth.status, auth.authenticated) == (AuthStatus.NONE, False)
    assert authenticate_sender(raw, ["marie@[192.0.2.1]"], GMAIL).status is AuthStatus.NONE


def test_unicode_from_domain_matches_its_a_label():
    header = gmail_ar().replace("header.from=sambreville.be", "header.from=xn--brxelles-75a.be")
    auth = authenticate_sender(mail(GMAIL_ENTRY, header), ["info@brüxelles.be"], GMAIL)
    assert (auth.status, auth.domain) == (AuthStatus.PASS, "xn--brxelles-75a.be")


# --- no header from a trusted server ------------------------------------------------------

def test_unstamped_is_unauthenticated_by_default():
    raw = mail(GMAIL_ENTRY)
    auth = authenticate_sender(raw, MARIE, GMAIL)
    assert (auth.status, auth.authenticated) == (AuthStatus.UNKNOWN_SERVER, False)
    auth = authenticate_sender(mail(gmail_ar()), MARIE, NOTHING)
    assert (auth.status, auth.authenticated) == (AuthStatus.UNKNOWN_SERVER, False)
    assert auth.reason == "No receiving server is configured to vouch for senders"


def test_believe_from_only_when_nothing_was_stamped():
    believe = SenderAuthentication(authserv_ids=("mx.google.com",), unstamped="believe_from")
    auth = authenticate_sender(mail(GMAIL_ENTRY), MARIE, believe)
    assert (auth.status, auth.authenticated) == (AuthStatus.UNKNOWN_SERVER, True)
    assert auth.reason.endswith("the From address is believed as configured")
    # a verdict from the server is never overruled
    auth = authenticate_sender(mail(GMAIL_ENTRY, gmail_ar(dmarc="fail")), MARIE, believe)
    assert (auth.status, auth.authenticated) == (AuthStatus.FAIL, False)


# --- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, unreadable", [
    ("mx.google.com; dmarc", True),
    ("mx.google.com; dkim=pass (" + "(" * 3000 + " header.d=sambreville.be", True),
    ("mx.google.com " + "x" * 5000 + "; dmarc=pass header.from=sambreville.be", True),
    # authres drops a property it cannot read: a pass without its domain counts for nothing
    ("mx.google.com; dmarc=pass header.from=\"sambreville.be", False),
])
def test_unreadable_trusted_header(value, unreadable):
    auth = authenticate_sender(mail(GMAIL_ENTRY, "Authentication-Results: " + value), MARIE, GMAIL)
    assert auth.status is AuthStatus.NONE and not auth.authenticated
    assert (auth.reason == "The Authentication-Results from mx.google.com could not be read") is unreadable


def test_ten_thousand_headers_are_bounded_work(monkeypatch):
    import mailbot.mail.authn as authn

    parsed = []
    real_parse = authn._parse
    monkeypatch.setattr(authn, "_parse", lambda value: parsed.append(value) or real_parse(value))
    forged = "Authentication-Results: mx.google.com; dmarc=pass header.from=sambreville.be"
    flood = [forged] * 10_000
    auth = authenticate_sender(mail(GMAIL_ENTRY, *flood), MARIE, GMAIL)
    assert len(parsed) == authn.MAX_PARSED
    assert auth.status is AuthStatus.PASS  # those read agree
    # the trusted header is read when the receiving server wrote it, on top
    raw = mail(GMAIL_ENTRY, gmail_ar(dmarc="fail"), *flood)
    assert authenticate_sender(raw, MARIE, GMAIL).status is AuthStatus.FAIL
    # a header pushed below 50 others is not looked at
    parsed.clear()
    raw = mail(*["Authentication-Results: other.example; none"] * 60, gmail_ar())
    assert authenticate_sender(raw, MARIE, GMAIL).status is AuthStatus.UNKNOWN_SERVER
    assert parsed == []
    # nor one below 1,000 other header fields
    raw = mail(*[f"X-Filler-{n}: x" for n in range(authn.MAX_FIELDS)], gmail_ar())
    assert authenticate_sender(raw, MARIE, GMAIL).status is AuthStatus.UNKNOWN_SERVER
    assert authenticate_sender(mail(*[f"X-Filler-{n}: x" for n in range(900)], gmail_ar()), MARIE, GMAIL).status \
        is AuthStatus.PASS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_no_header_value_crashes_it(value):
    value = value.replace("\r", " ").replace("\n", " ")
    for trust in (GMAIL, EXO):
        for prefix in ("mx.google.com; ", ""):
            raw = ("Authentication-Results: " + prefix + value + "\r\n").encode("utf-8", "surrogatepass") + BODY
            auth = authenticate_sender(raw, MARIE, trust)
            assert isinstance(auth.status, AuthStatus) and auth.reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.text(max_size=40), max_size=3))
def test_no_raw_message_crashes_it(raw, senders):
    auth = authenticate_sender(raw, senders, EXO)
    assert isinstance(auth.status, AuthStatus) and auth.reason


# --- configuration ------------------------------------------------------------------------

BOXES = {"worldline": {"address": "ecom@worldline.localhost"}, "bosa": {"address": "sm@bosa.localhost"}}


@pytest.mark.parametrize("section, words", [
    ({"trust_topmost_without_id": True}, "needs entry_hosts"),
    ({"authserv_ids": ["mx.google.com; dmarc=pass"]}, "one host or domain name"),
    ({"unstamped": "trust"}, "mailboxes.bosa.authentication.unstamped"),
    ({"authserv-ids": ["mx.google.com"]}, "is not a known key"),
])
def test_configuration_mistakes(section, words):
    with pytest.raises(ConfigError, match=words):
        parse_settings({"mailboxes": {**BOXES, "bosa": {**BOXES["bosa"], "authentication": section}}})


def test_configuration_default_trusts_nobody():
    box = parse_settings({"mailboxes": BOXES}).mailboxes["worldline"]
    assert box.authentication == SenderAuthentication()
    assert (box.authentication.authserv_ids, box.authentication.unstamped) == ((), "unauthenticated")
