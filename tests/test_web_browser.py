"""The staff page in a real browser (tests/browser.py: Debian's Chromium, headless, driven by
selenium): a newcomer's path. Real mail run through the pipeline makes the dossiers; the site
(mailbot/web) is served by uvicorn on 127.0.0.1 and signs in through a real OpenID Connect
provider on 127.0.0.1 (tests/oidc_provider.py). The newcomer signs in, finds the late dossier,
opens it, marks prevalidation done and sees the deadline met; then reads the page in NL and FR.

Screenshots of the list and of a dossier's page, in EN and FR, go to $MAILBOT_SCREENSHOTS when
set (else the test's tmp_path), for a person to look at."""

from __future__ import annotations

import base64
import datetime as dt
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from asgi_server import serving
from jinja2 import Environment, PackageLoader
from oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from mailbot.config import Settings, parse_settings
from mailbot.context import Context
from mailbot.forms import load_rules
from mailbot.forms.builder import complete_values, fill_form
from mailbot.pipeline import handle
from mailbot.resources import SANDBOX_CONFIG
from mailbot.season import XLSX, Mail, brussels
from mailbot.seen import Seen
from mailbot.store.db import open_database
from mailbot.store.models import Deadline, Dossier, Event, StaffAction
from mailbot.web.app import create_app

SECRET_ENV = "MAILBOT_TEST_OIDC_SECRET"
LATE_REF, ON_TIME_REF = "EPAY-2027-0001", "EPAY-2027-0002"
FORM_CAME = brussels(2027, 3, 1, 9)  # a Monday: prevalidation (3 business days) due on Thursday the 4th
SECOND_FORM_CAME = brussels(2027, 3, 8, 9)  # the next Monday: due on Thursday the 11th
PAGE_NOW = brussels(2027, 3, 9, 10)  # the Tuesday after: the first is late, the second is not


def sandbox_settings(metadata_url: str) -> Settings:
    with SANDBOX_CONFIG.open("rb") as file:
        data = tomllib.load(file)
    data["web"] = {"sign_in": "oidc", "oidc": {"metadata_url": metadata_url, "client_id": CLIENT_ID,
                                               "client_secret_env": SECRET_ENV}}
    return parse_settings(data)


TEMPLATES = Environment(loader=PackageLoader("mailbot", "templates"), autoescape=True)


def ui(lang: str) -> dict[str, Any]:
    """The staff page's words in `lang` (mailbot/templates/web/_ui_<lang>.j2), as the page has them."""
    return TEMPLATES.get_template(f"web/_ui_{lang}.j2").module.ui  # type: ignore[attr-defined]


def words(lang: str) -> dict[str, Any]:
    """The words the page shares with the mails (_words_<lang>.j2): stages, waits, deadlines."""
    return TEMPLATES.get_template(f"_words_{lang}.j2").module.w  # type: ignore[attr-defined]


# --- the world: two dossiers made by real mail ------------------------------------------------------

def order_form(settings: Settings, tag: str, at: dt.datetime, sender: str, **values: Any) -> Mail:
    wl, bosa = settings.mailboxes["worldline"].address, settings.mailboxes["bosa"].address
    form = fill_form("fr", complete_values("fr", **values), rules=load_rules())
    return Mail(at, sender, [wl], f"BOSA M1036 - Bon de commande – {values['project_name']}",
                "Bonjour, ci-joint notre bon de commande.", cc=[bosa],
                attachments=[("Bon de commande.xlsx", form, XLSX)], message_id=f"<{tag}@mail.example.net>")


def file_the_mail(settings: Settings, engine: Engine) -> None:
    """Two complete order forms from two clients, through the pipeline as the sandbox's server
    delivers them (stamped): two dossiers, each with an open prevalidation deadline."""
    ctx = Context.load(settings, engine, max_attempts=1)
    mails = [
        order_form(settings, "sambreville", FORM_CAME, "marie.dubois@sambreville.be", project_name="E-guichet"),
        order_form(settings, "gembloux", SECOND_FORM_CAME, "jan.peeters@gembloux.be", project_name="Parking",
                   legal_name="Ville de Gembloux", enterprise_number="0207.123.407",
                   vat_number="BE 0207.123.407", city="Gembloux", postal_code=5030,
                   business_contact_name="Jan Peeters", business_contact_email="jan.peeters@gembloux.be",
                   technical_contact_email="informatique@gembloux.be", billing_email="finances@gembloux.be",
                   account_holder="Ville de Gembloux", settlement_iban="BE62 5100 0754 7061"),
    ]
    for mail in mails:
        outcome = handle(mail.delivered(), Seen("worldline"), mail.at, ctx)
        assert outcome.failed is None, outcome.failed
    with Session(engine) as s:
        dossiers = {d.reference: d for d in s.exec(select(Dossier))}
        assert set(dossiers) == {LATE_REF, ON_TIME_REF}
        assert all(d.form_status == "complete" and not d.prevalidated for d in dossiers.values())
        open_ = {dossier_ref(s, d.dossier_id): d.due for d in s.exec(select(Deadline).where(
            Deadline.name == "prevalidation", Deadline.state == "open"))}
    today = PAGE_NOW.date()
    assert open_[LATE_REF] < today < open_[ON_TIME_REF], open_  # the world is what the test says


def dossier_ref(s: Session, dossier_id: int) -> str:
    found = s.get(Dossier, dossier_id)
    assert found is not None
    return found.reference


# --- the site, served ----------------------------------------------------------------------------

@dataclass
class Site:
    base: str
    engine: Engine
    provider: OidcProvider
    shots: Path

    def shot(self, driver: Chrome, name: str) -> Path:
        """The whole page, not only the window (a dossier's page is longer than a screen),
        through the DevTools protocol: a headless window is no taller than its screen."""
        path = self.shots / f"{name}.png"
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                      {"format": "png", "captureBeyondViewport": True, "clip": clip})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture
def site(oidc_provider: OidcProvider, tmp_path: Path, monkeypatch) -> Iterator[Site]:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    settings = sandbox_settings(oidc_provider.metadata_url)
    engine = open_database(f"sqlite:///{tmp_path}/web.sqlite")
    file_the_mail(settings, engine)
    shots = Path(os.environ.get("MAILBOT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, engine, clock=lambda: PAGE_NOW.astimezone(dt.timezone.utc))
    with serving(app) as base:
        oidc_provider.redirect_uris.add(f"{base}/signin/callback")
        yield Site(base, engine, oidc_provider, shots)
    engine.dispose()


# --- reading the page ------------------------------------------------------------------------------

def listed(driver: Chrome) -> list[str]:
    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.dossiers tbody tr td:first-child a")]


def deadline_row(driver: Chrome, name: str) -> list[str]:
    """The cells of the deadline table's row for `name` (in the page's words)."""
    for row in driver.find_elements(By.CSS_SELECTOR, "table.deadlines tbody tr"):
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no deadline {name!r} on {driver.current_url}")


def mark_button(driver: Chrome, reference: str, step: str) -> list[WebElement]:
    return driver.find_elements(
        By.CSS_SELECTOR, f"form[action='/dossiers/{reference}/mark'] button[name='step'][value='{step}']")


def click_to_page(driver: Chrome, element: WebElement) -> None:
    """Click what leads to another page, and wait for that page: a click that submits a form
    returns before the browser has left the old one (its elements would then be stale)."""
    old = driver.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def choose_language(driver: Chrome, lang: str) -> None:
    click_to_page(driver, driver.find_element(By.CSS_SELECTOR, f"header form.language button[value='{lang}']"))
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang


def test_a_newcomer_signs_in_finds_the_late_dossier_and_marks_prevalidation_done(site: Site, chrome: Chrome):
    staff = site.provider.sign_in_as("Morad.Staff@Worldline.localhost", "Morad Staff", email_verified=True)
    en, w = ui("en"), words("en")

    # Open the site: sent to the sign-in, on to the provider, and back signed in on the list.
    chrome.get(f"{site.base}/")
    assert chrome.current_url == f"{site.base}/"
    [asked] = site.provider.authorizations
    assert asked["redirect_uri"] == f"{site.base}/signin/callback"
    assert site.provider.outcomes("token") == ["issued"]
    choose_language(chrome, "en")  # headless Chromium asks for en-US anyway; the choice is the page's
    who = chrome.find_element(By.CSS_SELECTOR, "header form.who").text
    assert f"{en['nav']['signed_in']} {staff.email.lower()}" in who
    assert sorted(listed(chrome)) == [LATE_REF, ON_TIME_REF]
    site.shot(chrome, "list-en")

    # Tick "late" and search: the late dossier only.
    filters = chrome.find_element(By.CSS_SELECTOR, "form.filters")
    filters.find_element(By.CSS_SELECTOR, "input[name='late']").click()
    click_to_page(chrome, filters.find_element(By.TAG_NAME, "button"))
    assert parse_qs(urlsplit(chrome.current_url).query).get("late") == ["1"]
    assert listed(chrome) == [LATE_REF]
    late_filter_url = chrome.current_url

    # Open it: prevalidation is open, and LATE.
    click_to_page(chrome, chrome.find_element(By.LINK_TEXT, LATE_REF))
    assert urlsplit(chrome.current_url).path == f"/dossiers/{LATE_REF}"
    prevalidation = w["deadline"]["prevalidation"]
    _, party, _, due, state = deadline_row(chrome, prevalidation)
    assert party == w["party"]["worldline"]
    assert state == en["state"]["open"] and en["dossier"]["late"] in due and due.startswith("2027-03-04")
    where = chrome.find_element(By.CSS_SELECTOR, "p.where").text
    assert w["what"]["prevalidation"] in where
    site.shot(chrome, "dossier-en")

    # Mark prevalidation done: "Done", the deadline met, the dossier waits for the client's papers now.
    [button] = mark_button(chrome, LATE_REF, "prevalidated")
    assert button.text == en["dossier"]["mark_prevalidated"]
    click_to_page(chrome, button)
    assert urlsplit(chrome.current_url).path == f"/dossiers/{LATE_REF}"
    flash = chrome.find_element(By.CSS_SELECTOR, "p.flash.done")
    assert flash.text.startswith(f"{en['flash']['done']}:") and staff.email.lower() in flash.text
    _, _, _, due, state = deadline_row(chrome, prevalidation)
    assert state.startswith(en["state"]["met"]) and en["dossier"]["late"] not in due
    where = chrome.find_element(By.CSS_SELECTOR, "p.where").text
    assert w["stage"]["prevalidated"] in where
    assert w["what"]["prevalidation"] not in where
    assert w["what"]["signed_order_form"] in where and w["what"]["id_copy"] in where
    assert mark_button(chrome, LATE_REF, "prevalidated") == []  # done once: the button is gone
    assert mark_button(chrome, LATE_REF, "access_sent")  # the next step a person marks
    site.shot(chrome, "dossier-en-marked")

    # The list of late dossiers no longer has it.
    chrome.get(late_filter_url)
    assert listed(chrome) == []
    assert en["list"]["none"] in chrome.find_element(By.TAG_NAME, "main").text

    # In the store: the deadline met by the staff member, the event, the staff action.
    with Session(site.engine) as s:
        d = s.exec(select(Dossier).where(Dossier.reference == LATE_REF)).one()
        other = s.exec(select(Dossier).where(Dossier.reference == ON_TIME_REF)).one()
        assert d.prevalidated and not other.prevalidated
        [deadline] = s.exec(select(Deadline).where(Deadline.dossier_id == d.id, Deadline.name == "prevalidation"))
        assert deadline.state == "met" and deadline.closed_at == PAGE_NOW
        [event] = s.exec(select(Event).where(Event.dossier_id == d.id, Event.kind == "prevalidated"))
        assert event.detail == f"marked done by {staff.email.lower()}"
        [action] = s.exec(select(StaffAction))
        assert (action.who, action.action, action.dossier_id) == (staff.email.lower(), "prevalidated", d.id)


def test_the_page_is_served_in_dutch_and_french_by_the_header_buttons(site: Site, chrome: Chrome):
    site.provider.sign_in_as("morad.staff@worldline.localhost", "Morad Staff")
    chrome.get(f"{site.base}/dossiers/{LATE_REF}")  # asked for before sign-in: there after it
    assert urlsplit(chrome.current_url).path == f"/dossiers/{LATE_REF}"
    en = ui("en")

    for lang in ("nl", "fr"):
        theirs, w = ui(lang), words(lang)
        # The words checked are the language's own, not the English ones.
        assert theirs["dossier"]["deadlines"] != en["dossier"]["deadlines"]
        chrome.get(f"{site.base}/dossiers/{LATE_REF}")
        choose_language(chrome, lang)
        assert urlsplit(chrome.current_url).path == f"/dossiers/{LATE_REF}"  # back where it was chosen
        page = chrome.find_element(By.TAG_NAME, "body").text
        for text in (theirs["dossier"]["deadlines"], theirs["dossier"]["timeline"], theirs["dossier"]["late"],
                     theirs["dossier"]["mark_prevalidated"], theirs["nav"]["attention"]):
            assert text in page, (lang, text)
        assert deadline_row(chrome, w["deadline"]["prevalidation"])[4] == theirs["state"]["open"]
        if lang == "fr":
            site.shot(chrome, "dossier-fr")
        chrome.get(f"{site.base}/")
        page = chrome.find_element(By.TAG_NAME, "body").text
        assert theirs["list"]["late"] in page and theirs["col"]["waiting"] in page
        assert chrome.find_element(By.CSS_SELECTOR, "form.filters button").text == theirs["list"]["go"]
        if lang == "fr":
            site.shot(chrome, "list-fr")
