"""Is a mail from its From address? Read from the receiving server's Authentication-Results.

Pure: raw bytes + the From addresses + the mailbox's trust settings -> `SenderAuth`.

Only the receiving server(s) named in the configuration are believed (RFC 8601 §7.1): any
other Authentication-Results header may have been written by the sender. Two ways to name one:

* by authserv-id (`authserv_ids`, e.g. "mx.google.com", a Postfix host's name, the sandbox's
  "sandbox.localhost"): every header carrying that id is read. RFC 8601 §5 makes the border
  server delete such headers arriving from outside; a server that does not (a Postfix without a
  header_checks rule) lets a sender add its own, and the conflict checks below are the only
  defence left.
* Exchange Online writes its header with no authserv-id at all. `trust_topmost_without_id`
  then believes one header: the topmost Authentication-Results of the mail, only when it has
  no authserv-id and sits above the Received header of the mail's entry — the topmost Received
  whose by-host is under `entry_hosts` (Exchange Online's inbound servers are
  *.protection.outlook.com). Everything below that Received header came from outside as it
  was: a header the sender wrote sits there, and is never believed, also when the provider
  wrote none. The sending host's name (HELO) is not used: the sender chooses it, and mail from
  another Microsoft 365 organisation comes from *.outbound.protection.outlook.com anyway.
  Mail that never passed an entry server (from inside the same organisation) has no such
  header and is not authenticated this way.

A mail counts as from its From address (PASS) only with, at a trusted server, a DMARC pass for
exactly the From domain, or (no DMARC verdict) a DKIM pass whose signing domain has the From
domain's organisational domain (relaxed alignment, RFC 7489 §3.1, with the Public Suffix List
shipped by `publicsuffixlist`, never fetched). SPF alone never does (it vouches for the envelope
sender, not From); neither do ARC, Exchange's compauth or `dmarc=bestguesspass`.

Bounded: at most `MAX_FIELDS` header fields and `MAX_HEADERS` Authentication-Results headers are looked at
(from the top, where the receiving servers write), at most `MAX_PARSED` parsed, each at most `MAX_VALUE_CHARS`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import authres

MAX_HEAD_BYTES = 512_000  # of the top header block read
MAX_FIELDS = 1_000  # header fields looked at, from the top (a real mail has a few dozen)
MAX_HEADERS = 50  # Authentication-Results headers looked at, from the top
MAX_PARSED = 16  # of them parsed (the trusted ones)
MAX_VALUE_CHARS = 4_000  # longer is unreadable (authres is quadratic in the value's length)

_FIELD_END = re.compile(rb"\n(?![ \t])")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n")
# The first token of a value: the authserv-id, or "method=result" in Exchange's id-less shape.
_FIRST_TOKEN = re.compile(r"\s*([^\s;()]*)")
_RECEIVED_BY = re.compile(r"(?:^|\s)by\s+([^\s;]+)", re.IGNORECASE)


class AuthStatus(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password. Aligned DMARC pass, or aligned DKIM pass, at a trusted server
    FAIL = "fail"  # the trusted server says the From domain failed, or the headers contradict
    NONE = "none"  # the trusted server gave no verdict that counts, or the mail has no From
    UNKNOWN_SERVER = "unknown_server"  # no header from a trusted server at all


class Unstamped(enum.StrEnum):
    """What a mail with no header from a trusted server is taken as."""
    UNAUTHENTICATED = "unauthenticated"  # the safe default: an unlinked sender
    BELIEVE_FROM = "believe_from"  # the From header at its word: anyone can forge it


class TrustSettings(Protocol):
    """The per-mailbox settings (mailbot.config.SenderAuthentication has these attributes)."""
    @property
    def authserv_ids(self) -> Sequence[str]: ...
    @property
    def trust_topmost_without_id(self) -> bool: ...
    @property
    def entry_hosts(self) -> Sequence[str]: ...
    @property
    def unstamped(self) -> str: ...


@dataclass(frozen=True)
class SenderAuth:
    status: AuthStatus
    domain: str | None  # the From domain, lower-case (A-labels), when there is exactly one From
    method: str | None  # "dmarc" or "dkim" for PASS; the method that failed for FAIL
    reason: str  # one short English sentence for staff
    server: str | None = None  # the authserv-id read ("" for Exchange's id-less header)
    # PASS, or no trusted header at all on a mailbox configured to believe the From header.
    authenticated: bool = False


# ---------------------------------------------------------------- domains

@lru_cache(maxsize=1)
def _psl():
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()  # the list shipped in the package; nothing is fetched


def normalise_domain(text: str | None) -> str | None:
    """Lower case, no trailing dot, A-labels; None when not a plausible domain name."""
    if not text:
        return None
    text = text.strip().strip('"').rstrip(".").lower()
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            return None
    labels = text.split(".")
    if len(text) > 253 or not all(0 < len(label) <= 63 for label in labels) \
            or not re.fullmatch(r"[a-z0-9._-]+", text):
        return None
    return text


def organisational_domain(domain: str) -> str:
    """The registrable domain (RFC 7489 §3.2): "mail.sambreville.be" -> "sambreville.be"; a
    public suffix itself is its own organisational domain."""
    return _psl().privatesuffix(domain) or domain


def aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same organisational domain."""
    return organisational_domain(signing_domain) == organisational_domain(from_domain)


def _address_domain(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    return normalise_domain(domain) if at and local else None


# ---------------------------------------------------------------- header fields

@dataclass(frozen=True)
class _Field:
    name: str  # lower case
    value: str  # unfolded


def header_fields(raw: bytes, names: frozenset[str]) -> Iterator[_Field]:
    """The fields named `names` of the top header block, in order (top first)."""
    head = bytes(raw[:MAX_HEAD_BYTES])
    end = _BLANK_LINE.search(head)
    if head.startswith((b"\n", b"\r\n")):
        return
    if end:
        head = head[:end.start()]
    start = 0
    for count, boundary in enumerate(_FIELD_END.finditer(head), 1):
        yield from _field(head[start:boundary.start()], names)
        start = boundary.end()
        if count >= MAX_FIELDS:
            return
    yield from _field(head[start:], names)


def _field(chunk: bytes, names: frozenset[str]) -> Iterator[_Field]:
    name, sep, value = chunk.partition(b":")
    if not sep or len(name) > 100:
        return
    lowered = name.strip().lower().decode("latin-1")
    if lowered in names:
        text = _FOLD.sub("", value.decode("utf-8", "replace")).strip()
        yield _Field(lowered, text)


def authserv_id(value: str) -> str | None:
    """The authserv-id a header value starts with; None for Exchange's id-less shape."""
    token = _FIRST_TOKEN.match(value).group(1).lower()  # type: ignore[union-attr]
    return None if not token or "=" in token else token


def _received_by(value: str) -> str | None:
    """The by-host of a Received header (comments left out: they may quote anything)."""
    depth, kept = 0, []
    for ch in value[:MAX_VALUE_CHARS]:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            kept.append(ch)
    found = _RECEIVED_BY.search("".join(kept))
    return found.group(1).strip("[]").rstrip(".").lower() if found else None


def _under(host: str | None, domains: Sequence[str]) -> bool:
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)  # type: ignore[union-attr]


# ---------------------------------------------------------------- reading results

@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    props: dict[str, str]  # "header.from" -> "example.be"


def _parse(value: str) -> list[_Result] | None:
    """The results of one trusted header; None when unreadable."""
    if len(value) > MAX_VALUE_CHARS:
        return None
    # authres wants an authserv-id, which Exchange does not write, and no ';' at the end,
    # which Exchange does write ("... header.from=x.be;").
    text = value.rstrip().rstrip(";")
    if authserv_id(text) is None:
        text = "unnamed.invalid; " + text
    try:
        header = authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:  # noqa: BLE001 - SyntaxError, RecursionError on nested comments, worse
        return None
    out = []
    for r in header.results:
        props = {f"{p.type}.{p.name}".lower(): str(p.value or "") for p in getattr(r, "properties", ())}
        out.append(_Result(str(r.method).lower(), str(r.result).lower(), props))
    return out


def _dkim_domain(r: _Result) -> str | None:
    d = r.props.get("header.d")
    if not d or d == "none":
        d = r.props.get("header.i", "").rpartition("@")[2]
    return normalise_domain(d)


def _verdict(results: list[_Result], domain: str, where: str, server: str | None) -> SenderAuth:
    def auth(status: AuthStatus, method: str | None, reason: str) -> SenderAuth:
        return SenderAuth(status, domain, method, reason, server, status is AuthStatus.PASS)

    dmarc = [r for r in results if r.method == "dmarc"]
    about_from = [r for r in dmarc if normalise_domain(r.props.get("header.from")) == domain]
    if any(r.result == "fail" for r in dmarc):
        return auth(AuthStatus.FAIL, "dmarc", f"DMARC fail for {domain} at {where}")
    other = next((r.props.get("header.from") or "no domain" for r in dmarc if r not in about_from), None)
    if other is not None:
        # the server read another From than this one (two From headers?): none of it counts
        return auth(AuthStatus.NONE, None, f"DMARC result at {where} is for {other[:80]}, not {domain}")
    verdicts = {r.result for r in about_from}
    if "pass" in verdicts:
        if len(verdicts) > 1:
            return auth(AuthStatus.FAIL, "dmarc", f"Conflicting DMARC results for {domain} at {where}: "
                                                  "one of its headers is forged")
        return auth(AuthStatus.PASS, "dmarc", f"DMARC pass for {domain} at {where}")
    dkim = [r for r in results if r.method == "dkim"]
    signed = [(r, d) for r in dkim if (d := _dkim_domain(r)) and aligned(d, domain)]
    passed = [d for r, d in signed if r.result == "pass"]
    if passed:
        # "dkim=none" says the mail carries no signature: beside a pass, one header is forged.
        if any(r.result == "none" for r in dkim):
            return auth(AuthStatus.FAIL, "dkim", f"Conflicting DKIM results for {domain} at {where}: "
                                                 "one of its headers is forged")
        return auth(AuthStatus.PASS, "dkim", f"DKIM pass for {domain} (signed by {passed[0]}) at {where}")
    if any(r.result == "fail" for r, _ in signed):
        return auth(AuthStatus.FAIL, "dkim", f"DKIM fail for {domain} at {where}")
    seen = ", ".join(f"{r.method}={r.result}" for r in results if r.method in ("dmarc", "dkim", "spf"))
    return auth(AuthStatus.NONE, None, f"No DMARC pass or aligned DKIM pass for {domain} at {where}"
                                      + (f" ({seen})" if seen else ""))


def _trusted_values(raw: bytes, trust: TrustSettings) -> tuple[list[tuple[str | None, str]], str]:
    """(authserv-id or None, value) of the headers to believe, and why an id-less one was not."""
    ids = {i.strip().lower() for i in trust.authserv_ids}
    trusted: list[tuple[str | None, str]] = []
    topmost: str | None = None  # the value of the topmost header, when id-less and above the entry
    entry_seen = False  # the entry's Received header, above or below the topmost header
    refused = ""
    seen = 0
    for f in header_fields(raw, frozenset({"authentication-results", "received"})):
        if f.name == "received":
            if trust.trust_topmost_without_id and not entry_seen:
                entry_seen = _under(_received_by(f.value), trust.entry_hosts)
                if entry_seen and topmost is not None:
                    trusted.insert(0, (None, topmost))
            continue
        seen += 1
        if seen > MAX_HEADERS or len(trusted) >= MAX_PARSED:
            break
        sid = authserv_id(f.value)
        if seen == 1 and trust.trust_topmost_without_id and sid is None:
            if entry_seen:
                refused = "its topmost Authentication-Results sits below the Received header of its entry"
            else:
                topmost = f.value  # believed once the entry's Received header is found below it
        elif sid is not None and sid in ids:
            trusted.append((sid, f.value))
    if topmost is not None and not entry_seen:
        refused = "no Received header of an entry server below its topmost Authentication-Results"
    return trusted, refused


def authenticate_sender(raw: bytes, from_addresses: Sequence[str], trust: TrustSettings) -> SenderAuth:
    """Whether the mail `raw` is from its From address, as the trusted receiving server says.

    `from_addresses`: every address of the From header(s) (ParsedMail.from_all's emails).
    Never raises.
    """
    if len(from_addresses) != 1:
        if not from_addresses:
            return SenderAuth(AuthStatus.NONE, None, None, "The mail has no From address")
        return SenderAuth(AuthStatus.FAIL, None, None, "The mail has several From addresses")
    domain = _address_domain(str(from_addresses[0]))
    if domain is None:
        return SenderAuth(AuthStatus.NONE, None, None, "The From address has no usable domain")
    try:
        trusted, refused = _trusted_values(raw, trust)
    except Exception:  # noqa: BLE001 - a hostile header block must not stop the pipeline
        trusted, refused = [], "its header block could not be read"
    if not trusted:
        believe = trust.unstamped == Unstamped.BELIEVE_FROM
        names = ", ".join(trust.authserv_ids) or ("the topmost receiving server"
                                                 if trust.trust_topmost_without_id else "")
        if not names:
            reason = "No receiving server is configured to vouch for senders"
        else:
            reason = f"No Authentication-Results from {names}" + (f" ({refused})" if refused else "")
        if believe:
            reason += "; the From address is believed as configured"
        return SenderAuth(AuthStatus.UNKNOWN_SERVER, domain, None, reason, None, believe)
    results: list[_Result] = []
    servers = []
    for sid, value in trusted:
        where = sid or "the receiving server"
        parsed = _parse(value)
        if parsed is None:
            return SenderAuth(AuthStatus.NONE, domain, None,
                              f"The Authentication-Results from {where} could not be read", sid or "")
        results += parsed
        servers.append(sid or "")
    first = servers[0]
    return _verdict(results, domain, first or "the receiving server", first)
