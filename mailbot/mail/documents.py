"""Which of a mail's attachments are the process's documents.

Every signal counts: the content (the form checker on workbooks, PDF text and metadata, the
file type), the file name in FR/NL/EN, which inbox, and the dossier's current step — a client
who answers "please send the signed form and your ID" with `scan_001.pdf` and `IMG_2041.jpg`
has sent exactly those. Pure apart from reading the attachments' bytes.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass, field, replace
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from mailbot.errors import RulesError
from mailbot.forms import FormCheck, FormRules, check_form
from mailbot.mail.freemail import is_free_mail
from mailbot.mail.model import Attachment, ParsedMail
from mailbot.resources import rules_file
from mailbot.tomlfile import read_toml

DEFAULT_RULES = rules_file("documents.toml")
KINDS = ("order_form", "convention", "signed_order_form", "id_copy")


@dataclass(frozen=True)
class DocumentRules:
    names: dict[str, tuple[str, ...]]
    text: dict[str, tuple[str, ...]]
    attached: tuple[str, ...]
    signature_picture: re.Pattern[str]
    signature_picture_max_bytes: int
    min_readable_picture_bytes: int
    pdf_text_max_bytes: int
    pdf_text_pages: int
    pdf_text_max_chars: int = 100_000
    pdf_inflated_max_bytes: int = 2_000_000
    public_domains: frozenset[str] = frozenset()

    def is_free_mail(self, domain: str) -> bool:
        """At a free-mail provider: the package's list and `public_domains` (mail.freemail)."""
        return is_free_mail(domain, self.public_domains)


def load_document_rules(path: Path | str | None = None) -> DocumentRules:
    """The rules in `path`; None: the rules shipped with mailbot."""
    source: Path | Traversable = Path(path) if path is not None else DEFAULT_RULES
    data = read_toml(source, "rules file")
    try:
        names, text, limits = data["names"], data["text"], data["limits"]
        for key in ("order_form", "convention", "id_copy", "signed"):
            if not isinstance(names.get(key), list):
                raise RulesError(f"{source}: [names] needs a list '{key}'")
        return DocumentRules(
            names={k: tuple(fold(w) for w in v) for k, v in names.items()},
            text={k: tuple(fold(w) for w in v) for k, v in text.items()},
            attached=tuple(fold(w) for w in data["announce"]["attached"]),
            signature_picture=re.compile(limits["signature_picture"], re.IGNORECASE),
            signature_picture_max_bytes=int(limits["signature_picture_max_bytes"]),
            min_readable_picture_bytes=int(limits["min_readable_picture_bytes"]),
            pdf_text_max_bytes=int(limits["pdf_text_max_bytes"]),
            pdf_text_pages=int(limits["pdf_text_pages"]),
            pdf_text_max_chars=int(limits.get("pdf_text_max_chars", 100_000)),
            pdf_inflated_max_bytes=int(limits.get("pdf_inflated_max_bytes", 2_000_000)),
            public_domains=frozenset(d.lower() for d in data.get("senders", {}).get("public_domains", [])),
        )
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise RulesError(f"{source}: {exc.__class__.__name__}: {exc}") from exc


def fold(text: str) -> str:
    """Lower case, no accents, every run of punctuation or space one space."""
    text = unicodedata.normalize("NFKD", str(text).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def has_word(folded: str, words: tuple[str, ...]) -> bool:
    padded = f" {folded} "
    return any(f" {w} " in padded for w in words)


@dataclass(frozen=True)
class Step:
    """What the dossier is waiting for, as far as attachments are concerned."""
    form_complete: bool = False
    wants_signed_form: bool = False
    wants_id_copy: bool = False
    wants_convention: bool = False


@dataclass(frozen=True)
class Document:
    kind: str  # one of KINDS
    index: int  # the attachment's position in mail.attachments
    reason: str  # the signal that decided
    check: FormCheck | None = None  # the form check, for workbooks
    usable: bool = True  # False: an attempt at the document that cannot be used
    problem: str | None = None  # why it cannot be used, as a code the answers translate: "too_small"


@dataclass(frozen=True)
class Reading:
    documents: tuple[Document, ...]
    ignored: tuple[tuple[int, str], ...]  # (attachment index, why it is not a document)

    def of(self, kind: str) -> tuple[Document, ...]:
        return tuple(d for d in self.documents if d.kind == kind)

    def usable(self, kind: str) -> tuple[Document, ...]:
        return tuple(d for d in self.documents if d.kind == kind and d.usable)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.kind for d in self.documents))


def file_type(att: Attachment) -> str:
    """workbook | old_office | pdf | picture | other, from the content first, then the name."""
    head = att.data[:8]
    name = att.filename.lower()
    if head.startswith(b"%PDF") or (not head and name.endswith(".pdf")):
        return "pdf"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")) or \
            att.data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1") or att.content_type.startswith("image/"):
        return "picture"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "old_office"
    if head.startswith(b"PK") and (b"xl/" in att.data[:65536] or name.endswith((".xlsx", ".xlsm"))):
        return "workbook"
    if (name.endswith((".xlsx", ".xlsm", ".xls", ".ods"))
            or "spreadsheet" in att.content_type or "excel" in att.content_type):
        return "workbook"
    if name.endswith(".pdf") or att.content_type == "application/pdf":
        return "pdf"
    return "other"


@dataclass(frozen=True)
class PdfText:
    """What a PDF's first pages say: their text and metadata, folded ('' for scans or broken
    PDFs); `problem`: why the PDF was not read at all (past a bound: a decompression bomb)."""
    text: str = ""
    problem: str | None = None


class _Enough(Exception):
    """As much text as the signal needs: extraction stops here."""


def pdf_text(data: bytes, rules: DocumentRules) -> PdfText:
    """The text of the first `pdf_text_pages` pages, at most `pdf_text_max_chars` of it (the
    extraction stops there), with every stream pypdf inflates or parses bounded by
    `pdf_inflated_max_bytes`: pypdf's text extraction grows faster than its input (a 100 KB PDF
    inflating to 30 MB of text took minutes and hundreds of MB), so a PDF past a bound is not read."""
    if len(data) > rules.pdf_text_max_bytes:
        return PdfText()
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import LimitReachedError

    most = rules.pdf_inflated_max_bytes
    bounds: dict[str, Any] = dict.fromkeys((
        "maximum_declared_stream_length", "array_based_stream_maximum_output_length", "zlib_maximum_output_length",
        "lzw_maximum_output_length", "run_length_maximum_output_length", "brotli_maximum_output_length",
        "image_maximum_buffer_size", "xmp_maximum_input_length", "jbig2_maximum_output_length"), most)
    pieces: list[str] = []
    count = 0

    def keep(text: str, *_: object) -> None:
        nonlocal count
        pieces.append(text)
        count += len(text)
        if count >= rules.pdf_text_max_chars:
            raise _Enough

    try:
        # Work counts scaled to the same bound; no external jbig2dec: text needs no pictures.
        with apply_configuration(None, **bounds, stream_decoding_work_maximum_length=2 * most,
                                 stream_parsing_work_maximum_count=most // 4, zlib_maximum_recovery_input_length=most,
                                 xform_maximum_invocations_per_extraction=100, jbig2dec_binary=None):
            reader = PdfReader(io.BytesIO(data), strict=False)
            meta: dict[str, Any] = dict(reader.metadata or {})
            pieces.extend(f"{meta.get(k, '')} " for k in ("/Title", "/Subject", "/Keywords"))
            for page in reader.pages[: rules.pdf_text_pages]:
                pieces.append(" ")
                page.extract_text(visitor_text=keep)
    except _Enough:
        pass
    except LimitReachedError as exc:
        return PdfText(problem=f"a PDF past the reading bounds ({most / 1e6:g} MB inflated per stream), not read: "
                               f"{str(exc)[:120]}")
    except MemoryError:
        raise  # the reader process's memory bound: the whole mail is set aside (mailbot/readers.py)
    except Exception:  # noqa: BLE001 - any broken PDF just gives no text signal
        return PdfText()
    return PdfText(fold("".join(pieces)))


def _name_kind(name: str, rules: DocumentRules) -> str | None:
    for kind in ("convention", "id_copy", "order_form"):
        if has_word(name, rules.names[kind]):
            return kind
    return None


@dataclass
class Looked:
    """What the attachments' content says, by attachment index: the costly part of reading a
    mail (the form checker, PDF text), kept so that a second reading of the same mail (once its
    dossier is known) does not do it again, and so that it can be done ahead, in another process."""
    form_checks: dict[int, FormCheck] = field(default_factory=dict)
    pdf_texts: dict[int, PdfText] = field(default_factory=dict)

    def form_check(self, index: int, att: Attachment, form_rules: FormRules) -> FormCheck:
        if index not in self.form_checks:
            self.form_checks[index] = check_form(att.data, name=att.filename or "attachment.xlsx", rules=form_rules)
        return self.form_checks[index]

    def pdf_text(self, index: int, att: Attachment, rules: DocumentRules) -> PdfText:
        if index not in self.pdf_texts:
            self.pdf_texts[index] = pdf_text(att.data, rules)
        return self.pdf_texts[index]


def look_at(mail: ParsedMail, form_rules: FormRules, rules: DocumentRules) -> Looked:
    """Everything `read_documents` may need from the attachments' content, whatever the dossier."""
    looked = Looked()
    for index, att in enumerate(mail.attachments):
        kind_of_file = file_type(att)
        if kind_of_file in ("workbook", "old_office"):
            looked.form_check(index, att, form_rules)
        elif kind_of_file == "pdf" and _name_kind(_stem(att), rules) is None:
            looked.pdf_text(index, att, rules)
    return looked


def _stem(att: Attachment) -> str:
    return fold(att.filename.rsplit(".", 1)[0] if "." in att.filename else att.filename)


def read_documents(mail: ParsedMail, form_rules: FormRules, step: Step | None,
                   inboxes: tuple[str, ...], rules: DocumentRules,
                   looked: Looked | None = None) -> Reading:
    """Classify each attachment; `inboxes` names where the mail was seen (worldline, bosa).
    `looked` keeps what the content said, across readings of the same mail."""
    looked = Looked() if looked is None else looked
    step = step or Step()
    documents: list[Document] = []
    ignored: list[tuple[int, str]] = []
    unknown: list[tuple[int, str]] = []  # (index, file type) with no signal of their own
    form_like: list[tuple[int, str]] = []  # PDFs or pictures that say they are the order form
    for index, att in enumerate(mail.attachments):
        kind_of_file = file_type(att)
        name = _stem(att)
        named = _name_kind(name, rules)
        signed = has_word(name, rules.names["signed"])
        if kind_of_file == "picture" and named is None and not signed and _is_logo(att, name, rules):
            ignored.append((index, "a picture of the mail's signature (a logo)"))
            continue
        if kind_of_file in ("workbook", "old_office"):
            check = looked.form_check(index, att, form_rules)
            if check.is_order_form or any(p.code != "not_an_order_form" for p in check.problems if p.field == "form"):
                documents.append(Document("order_form", index, "a workbook read by the form checker",
                                          check, usable=check.is_order_form))
            elif named == "order_form":
                documents.append(Document("order_form", index, "a workbook named as the order form", check,
                                          usable=False))
            else:
                ignored.append((index, "a workbook that is not the order form"))
            continue
        if kind_of_file not in ("pdf", "picture"):
            if named == "order_form":
                # A .docx or an odd format named as the form: the client tried to send it.
                documents.append(Document("order_form", index, f"a {kind_of_file} file named as the order form",
                                          usable=False))
            else:
                ignored.append((index, f"not a document of the process ({att.content_type})"))
            continue
        if named is None and kind_of_file == "pdf":
            read = looked.pdf_text(index, att, rules)
            if read.problem:  # not read: no document, the reason recorded with the attachment
                ignored.append((index, read.problem))
                continue
            text = read.text
            for kind in ("convention", "order_form", "id_copy"):
                if text and has_word(text, rules.text.get(kind, ())):
                    named = kind
                    break
        if named in ("convention", "id_copy"):
            documents.append(Document(named, index, f"the {kind_of_file}'s name or text says so"))
        elif named == "order_form" or (signed and kind_of_file == "pdf"):
            form_like.append((index, kind_of_file))
        else:
            unknown.append((index, kind_of_file))
    has_workbook = any(d.kind == "order_form" and d.usable for d in documents)
    for index, kind_of_file in form_like:
        if has_workbook or step.form_complete:
            documents.append(Document("signed_order_form", index,
                                      f"a {kind_of_file} of the order form, with the form already sent"))
        else:
            documents.append(Document("order_form", index,
                                      f"the order form as a {kind_of_file} instead of the Excel workbook",
                                      usable=False))
    # A picture too small to read is still received: the client is told why it cannot be used.
    small = {i for i, att in enumerate(mail.attachments)
             if file_type(att) == "picture" and att.size < rules.min_readable_picture_bytes}
    documents = [_readable(d, small) for d in documents]
    documents.extend(_readable(d, small) for d in _by_step(unknown, documents, step, inboxes, small))
    taken = {d.index for d in documents}
    ignored.extend((i, "no sign of which document it is") for i, _ in unknown if i not in taken)
    return Reading(tuple(sorted(documents, key=lambda d: d.index)), tuple(sorted(ignored)))


def _is_logo(att: Attachment, name: str, rules: DocumentRules) -> bool:
    """By what marks a signature picture (shown in the HTML body, a signature name), never by
    size alone: a small photo of an identity card is a document that cannot be read."""
    if att.size > rules.signature_picture_max_bytes:
        return False
    return (att.embedded or bool(rules.signature_picture.match(att.filename))
            or has_word(name, rules.names.get("logo", ())))


def _readable(doc: Document, small: set[int]) -> Document:
    if doc.index not in small or not doc.usable:
        return doc
    return replace(doc, usable=False, problem="too_small", reason=f"{doc.reason}; a picture too small to read")


def _by_step(unknown: list[tuple[int, str]], found: list[Document], step: Step, inboxes: tuple[str, ...],
             small: set[int]) -> list[Document]:
    """Files without a signal of their own, read in the light of what the dossier waits for."""
    have = {d.kind for d in found if d.usable}
    wanted = []
    if step.wants_signed_form and "signed_order_form" not in have:
        wanted.append("signed_order_form")
    if step.wants_id_copy and "id_copy" not in have:
        wanted.append("id_copy")
    out: list[Document] = []
    pool = sorted(unknown, key=lambda u: u[0] in small)  # a readable picture first
    # The signed form is usually a PDF scan, the identity card a photo: match by type first
    # (a lone photo is the identity card), then whatever is left.
    for by_type in (True, False):
        for kind, prefer in (("signed_order_form", "pdf"), ("id_copy", "picture")):
            pick = next((u for u in pool if u[1] == prefer or not by_type), None) if kind in wanted else None
            if pick is None:
                continue
            pool.remove(pick)
            wanted.remove(kind)
            out.append(Document(kind, pick[0],
                                f"an unnamed {pick[1]} while the dossier waits for the {kind.replace('_', ' ')}"))
    if pool and step.wants_convention and "convention" not in have and inboxes == ("bosa",):
        pick = next((u for u in pool if u[1] == "pdf"), None)
        if pick:
            out.append(Document("convention", pick[0],
                                "an unnamed PDF sent to BOSA alone while the convention is awaited"))
    return out


def announces_form(mail: ParsedMail, rules: DocumentRules) -> bool:
    """The body says the order form is attached ("ci-joint le bon de commande")."""
    body = fold(mail.body_text[:5000])
    return has_word(body, rules.attached) and has_word(body, rules.names["order_form"])
