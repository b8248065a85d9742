"""What a mail is once read: typed values passed between the pipeline's stages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Address:
    """One mailbox: the display name as decoded, the address lower-cased."""
    name: str
    email: str

    def __str__(self) -> str:
        return self.email


@dataclass(frozen=True)
class Attachment:
    """A file carried by a mail. `data` lives only in memory while the mail is processed;
    only the metadata and the hash are ever stored."""
    filename: str  # decoded, without any directory part; "" when the mail gave none
    content_type: str  # lower-case, e.g. "application/pdf"
    size: int
    sha256: str
    data: bytes = field(repr=False, compare=False)
    origin: str = "direct"  # "direct" | "forwarded" (inside message/rfc822) | "tnef" (winmail.dat)
    content_id: str = ""  # the part's Content-ID, without angle brackets
    embedded: bool = False  # the HTML body shows it (an <img src="cid:..."> naming its Content-ID)


@dataclass(frozen=True)
class AttachedMail:
    """A mail carried whole inside this one (message/rfc822): a forward "as attachment"."""
    from_: Address | None
    subject: str
    message_id: str | None
    date: dt.datetime | None


EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class ParsedMail:
    """A mail as the pipeline sees it. Never raises on access; what could not be read is in
    `defects`."""
    message_id: str | None  # without angle brackets; None when absent or unusable
    content_hash: str  # sha256 over the parts that are the same in every copy of the mail
    subject: str  # decoded, on one line (CR/LF removed: header injection)
    from_: Address | None
    from_all: tuple[Address, ...]  # every address in From (forgeries may carry two)
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    delivered_to: tuple[Address, ...]
    date: dt.datetime | None  # aware, UTC
    in_reply_to: tuple[str, ...]  # message ids without brackets
    references: tuple[str, ...]
    return_path: str | None  # "" for the null path <>; None when the header is absent
    headers: Mapping[str, str]  # lower-case name -> decoded value, for the headers rules look at
    body_text: str  # the text of the mail (plain, or HTML turned to text), bounded in size
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]  # what the parser found wrong, one short phrase each
    content_type: str = "text/plain"  # of the whole message, lower-case
    size: int = 0  # bytes of the raw message
    attached_mails: tuple[AttachedMail, ...] = ()  # the mails it carries as message/rfc822 parts
    attached_text: str = ""  # their text (plain, or HTML turned to text), bounded like body_text

    @property
    def sender(self) -> str | None:
        return self.from_.email if self.from_ else None

    def recipients(self) -> tuple[Address, ...]:
        return self.to + self.cc
