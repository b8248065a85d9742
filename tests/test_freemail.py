"""Free-mail providers (issue 10, item 5): the maintained package's list and the rules file's."""

import pytest

from mailbot.mail.documents import load_document_rules
from mailbot.mail.freemail import is_free_mail


@pytest.mark.parametrize("domain", ["yahoo.be", "hotmail.nl", "gmx.de", "outlook.com", "gmail.com", "skynet.be",
                                    "telenet.be", "GMAIL.COM.", "proximus.be", "voo.be", "hotmail.be"])
def test_free_mail_providers(domain):
    assert load_document_rules().is_free_mail(domain)


@pytest.mark.parametrize("domain", ["sambreville.be", "worldline.com", "bosa.fgov.be", "be"])
def test_organisations_are_not_free_mail(domain):
    assert not load_document_rules().is_free_mail(domain)


def test_free_mail_list_is_package_and_rules():
    assert is_free_mail("yahoo.be") and not is_free_mail("proximus.be")  # the package alone
    assert is_free_mail("proximus.be", ["proximus.be"])
    assert is_free_mail("mx.yahoo.be")  # a provider's subdomain
    assert is_free_mail("")  # unreadable: never a colleague
