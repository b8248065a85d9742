"""The per-address limits in the running daemon: mail appended to the session Dovecot, answers
through a LocalSmtp (aiosmtpd) on 127.0.0.1 (issue 10.6: 15 answers in 14 minutes before)."""

import time
import unicodedata

from mailworld import BOSA, WL, local_smtp, wait_for, world  # noqa: F401 - fixtures
from sqlmodel import col

from mailbot.season import Mail, brussels
from mailbot.store.models import Decision, Message, OutboxMail

ZOE = "zoë@exämple.be"
FORMS = [ZOE, unicodedata.normalize("NFD", ZOE), "Zoë@Exämple.BE", "ZOË@xn--exmple-cua.be"]


def announcement(n: int, sender: str) -> bytes:
    mail = Mail(brussels(2027, 3, 1, 9, n), "placeholder@example.be", [WL], "BOSA M1036 - Bon de commande – E-guichet",
                "Bonjour, veuillez trouver notre bon de commande ci-joint.", cc=[BOSA], message_id=f"<z{n}@example.be>")
    return mail.to_bytes().replace(b"placeholder@example.be", sender.encode())  # UTF-8 in the header (RFC 6532)


def test_one_person_writing_her_address_four_ways_gets_one_answer(world):
    world.start()
    for n in range(8):
        world.append("worldline", announcement(n, FORMS[n % len(FORMS)]))
    wait_for(lambda: world.count(Message, Message.status == "processed") >= 8, timeout=60, what="the eight mails")
    wait_for(lambda: world.count(OutboxMail, col(OutboxMail.state) == "sent") >= 1, timeout=30, what="the answer")
    time.sleep(1.0)  # anything more would be on its way by now
    assert world.count(OutboxMail) == 1 and world.count(OutboxMail, OutboxMail.purpose == "form_missing") == 1
    assert [tuple(e.rcpt_tos) for e in world.smtp.envelopes] == [(ZOE, BOSA)]
    assert world.count(Decision, col(Decision.reason).startswith("limit: a form_missing answer already went")) == 7
