"""The sandbox SMTP server's Authentication-Results, stamped as a receiving server stamps it.

Pure: the message bytes and the envelope sender -> the message as delivered.

Every client of the sandbox connects over loopback, so there is no IP address to check an SPF
record against and no DNS to publish one in. The sandbox's rule, a convention stated here:
loopback is an authorised sender for every domain (SPF pass for the MAIL FROM domain), no
signature is checked (dkim=none), and every From domain publishes a DMARC policy (so a From
that does not align with the MAIL FROM domain, relaxed, is a DMARC fail, not "none"). A mail
sent with the From's own address as envelope sender passes; one whose From names another
organisation than its MAIL FROM fails, which is what a forged From sent from the sender's own
server gets at a real receiving server.

As RFC 8601 §5 asks of a border server, headers that arrive already carrying the sandbox's
authserv-id are deleted: a sender cannot vouch for itself.
"""

from __future__ import annotations

import re

from mailbot.mail.authn import aligned, authserv_id, normalise_domain
from mailbot.mail.parse import parse_mail

AUTHSERV_ID = "sandbox.localhost"

_FIELD_END = re.compile(rb"\n(?![ \t])")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_AR_NAME = re.compile(rb"[ \t]*authentication-results[ \t]*:", re.IGNORECASE)


def results_header(data: bytes, mail_from: str, server_id: str = AUTHSERV_ID) -> bytes:
    """The Authentication-Results field (with its CRLF) for a message received over loopback."""
    envelope = normalise_domain(mail_from.rpartition("@")[2]) if "@" in mail_from else None
    spf = f"spf=pass smtp.mailfrom={envelope}" if envelope else "spf=none (null or unusable sender)"
    head = data[:_head_end(data)]
    senders = parse_mail(head + b"\r\n\r\n").from_all
    from_domain = normalise_domain(senders[0].email.rpartition("@")[2]) if len(senders) == 1 else None
    if from_domain is None:
        dmarc = "dmarc=permerror (not exactly one usable From address)"
    elif envelope and aligned(envelope, from_domain):
        dmarc = f"dmarc=pass header.from={from_domain}"
    else:
        dmarc = f"dmarc=fail (From not aligned with MAIL FROM) header.from={from_domain}"
    return f"Authentication-Results: {server_id}; {spf}; dkim=none; {dmarc}\r\n".encode("ascii")


def without_own_results(data: bytes, server_id: str = AUTHSERV_ID) -> bytes:
    """`data` less the top-level Authentication-Results fields that claim `server_id`."""
    end = _head_end(data)
    kept: list[bytes] = []
    start = 0
    for boundary in [*_FIELD_END.finditer(data, 0, end), None]:
        stop = boundary.end() if boundary else end
        chunk = data[start:stop]
        if not (_AR_NAME.match(chunk) and _claims(chunk, server_id)):
            kept.append(chunk)
        start = stop
    return b"".join(kept) + data[end:]


def stamp(data: bytes, mail_from: str, server_id: str = AUTHSERV_ID) -> bytes:
    """The message as the sandbox delivers it: its own header on top, forged copies removed."""
    return results_header(data, mail_from, server_id) + without_own_results(data, server_id)


def _claims(chunk: bytes, server_id: str) -> bool:
    value = re.sub(r"\r?\n", "", chunk.partition(b":")[2].decode("utf-8", "replace"))
    return authserv_id(value) == server_id.lower()


def _head_end(data: bytes) -> int:
    """Offset just after the last header field's line end (where the blank line starts)."""
    if data.startswith((b"\n", b"\r\n")):
        return 0
    found = _BLANK_LINE.search(data)
    if found is None:
        return len(data)
    return found.start() + (2 if data.startswith(b"\r", found.start()) else 1)
