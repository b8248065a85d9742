"""Which attachments are the process's documents: pictures told apart from signature logos by
what marks a logo (shown in the HTML body by its Content-ID, a known signature name), not by
size alone; a picture of a document too small to read is received, and said to be unusable."""

from dataclasses import replace
from email.message import EmailMessage

import pdfs
import pytest

from mailbot.forms import load_rules
from mailbot.mail.documents import Step, load_document_rules, pdf_text, read_documents
from mailbot.mail.parse import parse_mail
from mailbot.season import jpeg_bytes, scan_pdf

FORM_RULES = load_rules()
DOCUMENT_RULES = load_document_rules()
WANTS_SIGNED = Step(form_complete=True, wants_signed_form=True, wants_id_copy=True)


def png(size: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(i % 251 for i in range(size - 8))


def outlook_mail(attached=(), embedded=()) -> bytes:
    """An HTML mail as Outlook sends it: pictures in the body (signature logos) are
    multipart/related parts the HTML names by cid:, files are attachments."""
    msg = EmailMessage()
    msg["From"] = "marie.dubois@sambreville.be"
    msg["To"] = "ecom-belgium@worldline.localhost"
    msg["Subject"] = "RE: [EPAY-2027-0001] documents signés"
    msg.set_content("Bonjour, voici les documents.\n\nMarie Dubois\nVille de Sambreville")
    imgs = "".join(f'<img src="cid:{name}@01DA1234.5678" width="120">' for name, _ in embedded)
    msg.add_alternative(f"<p>Bonjour, voici les documents.</p><p>Marie Dubois</p>{imgs}", subtype="html")
    html = msg.get_payload()[1]
    for name, data in embedded:
        html.add_related(data, maintype="image", subtype=name.rsplit(".", 1)[-1].replace("jpg", "jpeg"),
                         cid=f"<{name}@01DA1234.5678>", filename=name)
    for name, data, mime in attached:
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def kinds(raw: bytes, step: Step = WANTS_SIGNED):
    mail = parse_mail(raw)
    reading = read_documents(mail, FORM_RULES, step, ("worldline",), DOCUMENT_RULES)
    by_index = {d.index: d for d in reading.documents}
    return {att.filename: (by_index[i].kind, by_index[i].usable) if i in by_index else None
            for i, att in enumerate(mail.attachments)}, reading


@pytest.mark.parametrize("name", ["Carte d'identité Marie Dubois.jpg", "eID recto verso.jpg",
                                  "identiteitskaart An Janssens.jpg", "ID card.jpg"])
def test_a_small_picture_named_as_an_id_copy_is_received_and_said_unreadable(name):
    raw = outlook_mail(attached=[("scan_signé.pdf", scan_pdf(), "application/pdf"),
                                 (name, jpeg_bytes(9_000), "image/jpeg")])
    found, reading = kinds(raw)
    assert found == {"scan_signé.pdf": ("signed_order_form", True), name: ("id_copy", False)}
    [doc] = reading.of("id_copy")
    assert doc.problem == "too_small" and "too small to read" in doc.reason
    assert reading.usable("id_copy") == () and reading.usable("signed_order_form") == reading.of("signed_order_form")


def test_a_readable_id_copy_beside_signature_logos_in_the_body():
    raw = outlook_mail(attached=[("Carte d'identité.jpg", jpeg_bytes(80_000), "image/jpeg")],
                       embedded=[("image001.png", png(6_000)), ("image002.jpg", jpeg_bytes(30_000)),
                                 ("logo_ville.png", png(50_000))])
    found, reading = kinds(raw)
    assert found == {"Carte d'identité.jpg": ("id_copy", True), "image001.png": None, "image002.jpg": None,
                     "logo_ville.png": None}
    assert all("logo" in why for _, why in reading.ignored)


def test_outlook_signature_pictures_sent_as_attachments_are_logos():
    """A plain-text Outlook mail turns its signature pictures into attachments named image001..."""
    raw = outlook_mail(attached=[("image001.png", png(5_000), "image/png"),
                                 ("Logo Sambreville.png", png(4_000), "image/png"),
                                 ("scan_001.pdf", scan_pdf(), "application/pdf")])
    found, _ = kinds(raw)
    assert found == {"image001.png": None, "Logo Sambreville.png": None, "scan_001.pdf": ("signed_order_form", True)}


def test_a_small_unnamed_picture_while_the_id_copy_is_awaited_is_that_copy_unreadable():
    raw = outlook_mail(attached=[("IMG_2041.jpg", jpeg_bytes(7_000), "image/jpeg")])
    found, reading = kinds(raw)
    assert found == {"IMG_2041.jpg": ("id_copy", False)}
    assert reading.of("id_copy")[0].problem == "too_small"


def test_a_readable_picture_is_taken_before_a_small_one():
    raw = outlook_mail(attached=[("IMG_0001.jpg", jpeg_bytes(3_000), "image/jpeg"),
                                 ("IMG_0002.jpg", jpeg_bytes(90_000), "image/jpeg")])
    found, _ = kinds(raw, Step(form_complete=True, wants_id_copy=True))
    assert found == {"IMG_0001.jpg": None, "IMG_0002.jpg": ("id_copy", True)}


def test_a_big_picture_in_the_body_is_not_a_logo():
    """A phone photo pasted into the body is referenced by cid: too, but no logo is 400 KB."""
    raw = outlook_mail(embedded=[("image001.jpg", jpeg_bytes(400_000))])
    found, _ = kinds(raw, Step(form_complete=True, wants_id_copy=True))
    assert found == {"image001.jpg": ("id_copy", True)}


def test_the_parser_marks_pictures_the_html_shows():
    mail = parse_mail(outlook_mail(attached=[("photo.jpg", jpeg_bytes(20_000), "image/jpeg")],
                                   embedded=[("image001.png", png(2_000))]))
    marks = {a.filename: (a.embedded, a.content_id) for a in mail.attachments}
    assert marks == {"image001.png": (True, "image001.png@01DA1234.5678"), "photo.jpg": (False, "")}


# --- PDF text, read within bounds (pages, characters, inflated bytes) --------------------------

CONVENTION = "Convention d'utilisation du service ePayment"


def test_pdf_text_is_read_from_the_first_pages_only():
    """pdf_text_pages = 2: the words on page 2 count, those on page 3 are never read."""
    on_page_2 = pdfs.text_pdf([["Ville de Sambreville"], [CONVENTION], ["annexe"]])
    on_page_3 = pdfs.text_pdf([["Ville de Sambreville"], ["annexe"], [CONVENTION]])
    assert DOCUMENT_RULES.pdf_text_pages == 2
    assert "convention d utilisation" in pdf_text(on_page_2, DOCUMENT_RULES).text
    read = pdf_text(on_page_3, DOCUMENT_RULES)
    assert read.problem is None and "annexe" in read.text and "convention" not in read.text


def test_pdf_text_extraction_stops_at_its_character_bound():
    """150,000 characters on page 1, the convention's title on page 2: with the shipped bound
    (100,000 characters) the extraction stops before page 2; with a bound past page 1 it is read."""
    pdf = pdfs.text_pdf([pdfs.filler_lines(150_000), [CONVENTION]])
    assert DOCUMENT_RULES.pdf_text_max_chars == 100_000
    stopped = pdf_text(pdf, DOCUMENT_RULES)
    assert stopped.problem is None and "convention" not in stopped.text
    assert 100_000 <= len(stopped.text) < 101_000  # one line over at most: the line that crossed it
    whole = pdf_text(pdf, replace(DOCUMENT_RULES, pdf_text_max_chars=1_000_000))
    assert "convention d utilisation" in whole.text and len(whole.text) > 150_000


def test_a_pdf_whose_stream_inflates_past_the_bound_is_not_read():
    """The attack of issue 10: ~120 KB of PDF whose one content stream inflates to 30 MB of
    text (it took minutes and hundreds of MB before any bound). pypdf's decompression limit,
    set to pdf_inflated_max_bytes, refuses it before the text is parsed."""
    bomb = pdfs.bomb_pdf(30)
    assert len(bomb) < 150_000
    read = pdf_text(bomb, DOCUMENT_RULES)
    assert read.text == "" and "past the reading bounds (2 MB inflated per stream)" in read.problem
    # The bound is on inflated bytes, not on the file: 300 KB of text under a 200 KB bound
    # is refused, 50 KB is read.
    small = replace(DOCUMENT_RULES, pdf_inflated_max_bytes=200_000)
    assert "past the reading bounds (0.2 MB" in pdf_text(pdfs.text_pdf([pdfs.filler_lines(300_000)]), small).problem
    fine = pdf_text(pdfs.text_pdf([[*pdfs.filler_lines(50_000), CONVENTION]]), small)
    assert fine.problem is None and "convention d utilisation" in fine.text


def test_a_pdf_bomb_is_recorded_as_not_read_and_the_rest_of_the_mail_is_handled():
    raw = outlook_mail(attached=[("document.pdf", pdfs.bomb_pdf(30), "application/pdf"),
                                 ("convention.pdf", pdfs.text_pdf([[CONVENTION]]), "application/pdf"),
                                 ("Carte d'identité.jpg", jpeg_bytes(80_000), "image/jpeg")])
    found, reading = kinds(raw)
    assert found == {"document.pdf": None, "convention.pdf": ("convention", True),
                     "Carte d'identité.jpg": ("id_copy", True)}
    [(index, why)] = reading.ignored
    assert index == 0 and why.startswith("a PDF past the reading bounds")
