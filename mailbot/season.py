"""A realistic season of process mail, built in code: the demo sends it, the tests replay it.

Clients in French and Dutch, complete and incomplete order forms, scans, identity cards,
conventions, an out-of-office, a bounce, a newsletter, staff answers and a late deadline.
The client addresses look real (the form checker wants real-looking domains); the mailbox
addresses are the configuration's, under .localhost in the sandbox: nothing here can reach
a real mailbox.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import zlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from mailbot.config import Settings
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.transport.stamp import stamp

BRUSSELS = ZoneInfo("Europe/Brussels")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def brussels(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=BRUSSELS)


def pdf_bytes(text: str, pages: int = 1) -> bytes:
    """A small valid PDF whose first page shows `text` (so its text can be read back)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1", "replace")
    content = b"BT /F1 12 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(pages)) +
               b"] /Count %d >>" % pages]
    font = 3 + 2 * pages
    for i in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + 2 * i, font))
        body = content if i == 0 else b"BT ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def scan_pdf(pages: int = 1, size: int = 60_000) -> bytes:
    """A PDF like a scanner makes: no text layer, an image-sized stream of noise."""
    noise = zlib.compress(bytes((i * 7919) % 251 for i in range(size)), 0)
    return pdf_bytes("", pages) + b"%" + noise[:size].replace(b"\n", b" ").replace(b"\r", b" ") + b"\n"


def jpeg_bytes(size: int = 80_000, seed: int = 1) -> bytes:
    """Bytes that start like a camera JPEG (an identity-card photo), of a realistic size."""
    return b"\xff\xd8\xff\xe1" + bytes(((i * 31 + seed) % 256) for i in range(size)) + b"\xff\xd9"


@dataclass
class Mail:
    """One mail of the season, with the time it is sent."""
    at: dt.datetime
    sender: str
    to: list[str]
    subject: str
    body: str
    cc: list[str] = field(default_factory=list)
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)
    message_id: str | None = None
    in_reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""  # what this mail is, for the demo's narration
    envelope_from: str | None = None  # the SMTP MAIL FROM; None: the From address

    @property
    def mail_from(self) -> str:
        return self.envelope_from if self.envelope_from is not None else email.utils.parseaddr(self.sender)[1]

    def delivered(self) -> bytes:
        """The mail as the sandbox's SMTP server delivers it into a mailbox: stamped with the
        Authentication-Results a receiving server writes (mailbot/transport/stamp.py), for mail
        that reaches the pipeline without a server (replay, tests)."""
        return stamp(self.to_bytes(), self.mail_from)

    def to_bytes(self) -> bytes:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        if self.cc:
            msg["Cc"] = ", ".join(self.cc)
        msg["Subject"] = self.subject
        msg["Date"] = email.utils.format_datetime(self.at)
        if self.message_id:
            msg["Message-ID"] = self.message_id
        if self.in_reply_to:
            msg["In-Reply-To"] = self.in_reply_to
            msg["References"] = self.in_reply_to
        for name, value in self.headers.items():
            msg[name] = value
        msg.set_content(self.body)
        for filename, data, mime in self.attachments:
            maintype, subtype = mime.split("/", 1)
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return msg.as_bytes()


def _mid(tag: str) -> str:
    return f"<{tag}@mail.client.example.net>"


def season(settings: Settings, start: dt.date = dt.date(2027, 1, 11)) -> list[Mail]:
    """About twenty mails over four weeks, in the order they are sent."""
    wl = settings.mailboxes["worldline"].address
    bosa = settings.mailboxes["bosa"].address
    wl_staff = settings.mailboxes["worldline"].staff[0] if settings.mailboxes["worldline"].staff else wl

    def day(n: int, hh: int = 10, mm: int = 0) -> dt.datetime:
        d = start + dt.timedelta(days=n)
        return dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=BRUSSELS)

    # the shipped rules: they name the labels of the shipped reference forms
    form_rules = load_rules()
    fr_form = fill_form("fr", complete_values("fr"), rules=form_rules)
    nl_bad = fill_form("nl", complete_values(
        "nl", project_name="Online betalingen Stad Lier", legal_name="Stad Lier", enterprise_number=207502301,
        vat_number=None, street="Paradeplein 2", postal_code=2500, city="Lier",
        business_contact_name="An Janssens", business_contact_email="an.janssens@lier.be",
        technical_contact_email="webteam@lier.be", billing_email="facturen@lier.be", account_holder="Stad Lier",
        signatory_function="Algemeen directeur", settlement_iban="BE71 0961 2345 6760",
        pm_bancontact=None, pm_visa=None, pm_mastercard=None), rules=form_rules)
    nl_good = fill_form("nl", complete_values(
        "nl", project_name="Online betalingen Stad Lier", legal_name="Stad Lier", enterprise_number=207502301,
        vat_number=None, street="Paradeplein 2", postal_code=2500, city="Lier",
        business_contact_name="An Janssens", business_contact_email="an.janssens@lier.be",
        technical_contact_email="webteam@lier.be", billing_email="facturen@lier.be", account_holder="Stad Lier",
        signatory_function="Algemeen directeur", pm_mastercard=None), rules=form_rules)
    namur_form = fill_form("fr", complete_values(
        "fr", project_name="Stationnement Namur", legal_name="Ville de Namur", enterprise_number="0207.355.514",
        vat_number=None, street="Hôtel de Ville", postal_code=5000, city="Namur",
        business_contact_name="Claire Martin", business_contact_email="claire.martin@ville.namur.be",
        technical_contact_email="informatique@ville.namur.be", billing_email="finances@ville.namur.be",
        account_holder="Ville de Namur"), rules=form_rules)
    sambre = "Marie Dubois <marie.dubois@sambreville.be>"
    lier = "An Janssens <an.janssens@lier.be>"
    namur = "Claire Martin <claire.martin@ville.namur.be>"
    return [
        Mail(day(0, 9, 12), sambre, [wl], "BOSA M1036 - Bon de commande – E-guichet Stadsloket",
             "Bonjour,\n\nVeuillez trouver ci-joint notre bon de commande.\n\nMarie Dubois\nVille de Sambreville",
             cc=[bosa], attachments=[("Bon de commande_WL_M1036_FR_V2.2.xlsx", fr_form, XLSX)],
             message_id=_mid("sambre-1"), note="FR client sends a complete order form (To Worldline, Cc BOSA)"),
        Mail(day(0, 11, 40), lier, [wl], "BOSA M1036 - Bestelbon – Online betalingen Stad Lier",
             "Goedemiddag,\n\nIn bijlage onze bestelbon.\n\nMet vriendelijke groeten,\nAn Janssens",
             cc=[bosa], attachments=[("Bestelbon_WL_M1036_NL_V2.2.xlsx", nl_bad, XLSX)],
             message_id=_mid("lier-1"), note="NL client sends a form with an invalid IBAN and no payment method"),
        Mail(day(0, 11, 41), "An Janssens <an.janssens@lier.be>", [wl],
             "Automatisch antwoord: BOSA M1036 - Bestelbon", "Ik ben afwezig tot maandag.",
             headers={"Auto-Submitted": "auto-replied"}, message_id=_mid("lier-ooo"),
             note="an out-of-office from the NL client"),
        Mail(day(1, 8, 55), sambre, [bosa], "Convention d'utilisation ePayment – Ville de Sambreville",
             "Bonjour,\n\nVoici la convention signée.\n\nMarie Dubois",
             attachments=[("Convention utilisation_E-Payment_FR_2.2 signée.pdf",
                           pdf_bytes("Convention d'utilisation E-Payment - signee"), "application/pdf")],
             message_id=_mid("sambre-conv"), note="FR client sends the signed convention to BOSA"),
        Mail(day(1, 14, 5), namur, [wl], "BOSA M1036 - Bon de commande – Stationnement Namur",
             "Bonjour, voici notre bon de commande signé.", cc=[bosa],
             attachments=[("Bon de commande Namur.pdf", scan_pdf(), "application/pdf")],
             message_id=_mid("namur-1"), note="a client sends the order form as a PDF scan instead of the workbook"),
        Mail(day(1, 15, 0), "ePayment News <news@payments-newsletter.example.com>", [wl],
             "Nouveautés paiements en ligne – janvier", "Notre lettre d'information.",
             headers={"List-Id": "<news.payments-newsletter.example.com>", "Precedence": "bulk"},
             message_id=_mid("news-1"), note="a newsletter"),
        Mail(day(2, 10, 30), lier, [wl], "RE: [EPAY-2027-0002] BOSA M1036 - Bestelbon – Online betalingen Stad Lier",
             "Hierbij de verbeterde bestelbon.", cc=[bosa],
             attachments=[("Bestelbon_WL_M1036_NL_V2.2 v2.xlsx", nl_good, XLSX)], message_id=_mid("lier-2"),
             in_reply_to=_mid("lier-1"), note="NL client sends the corrected form"),
        Mail(day(2, 16, 20), namur, [wl], "RE: BOSA M1036 - Bon de commande – Stationnement Namur",
             "Voici le fichier Excel.", cc=[bosa],
             attachments=[("Bon de commande_WL_M1036_FR_V2.2.xlsx", namur_form, XLSX)],
             message_id=_mid("namur-2"), in_reply_to=_mid("namur-1"), note="the Namur client sends the workbook"),
        Mail(day(3, 9, 30), f"Worldline ecom-belgium <{wl_staff}>", ["marie.dubois@sambreville.be"],
             "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket",
             "Bonjour Madame Dubois,\n\nVotre bon de commande est complet. Merci de nous renvoyer la version "
             "signée et une copie de la carte d'identité.\n\nWorldline", cc=[bosa],
             message_id="<wl-1@worldline.localhost>", in_reply_to=_mid("sambre-1"),
             note="Worldline staff confirm the FR form is complete (pre-validation met)"),
        Mail(day(4, 11, 15), sambre, [wl], "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket",
             "Bonjour, voici les documents demandés.", cc=[bosa],
             attachments=[("scan_001.pdf", scan_pdf(), "application/pdf"),
                          ("IMG_2041.jpg", jpeg_bytes(), "image/jpeg")],
             message_id=_mid("sambre-2"), in_reply_to="<wl-1@worldline.localhost>",
             note="FR client sends the signed scan and the ID photo, with no telling names"),
        Mail(day(4, 11, 20), "MAILER-DAEMON@mx.sambreville.be", [wl], "Undelivered Mail Returned to Sender",
             "This is the mail system at host mx.sambreville.be.\n\nI'm sorry to have to inform you that your "
             "message could not be delivered.", headers={"Auto-Submitted": "auto-replied"},
             message_id=_mid("bounce-1"), note="a bounce"),
        Mail(day(7, 9, 0), "Jean Inconnu <jean.inconnu@gmail.com>", [wl],
             "Re: [EPAY-2027-0001] question", "Bonjour, où en est ce dossier ?", message_id=_mid("stranger"),
             note="a stranger writes in a dossier's thread"),
        Mail(day(9, 10, 0), f"Worldline ecom-belgium <{wl_staff}>", ["marie.dubois@sambreville.be"],
             "RE: [EPAY-2027-0001] BOSA M1036 - Bon de commande – E-guichet Stadsloket",
             "Bonjour, vos accès de production ont été envoyés au contact technique.", cc=[bosa],
             message_id="<wl-2@worldline.localhost>", in_reply_to=_mid("sambre-2"),
             note="Worldline sends the production access (encoding met)"),
    ]
