"""A real browser for the staff page's tests: Debian's Chromium, headless, driven by selenium
through Debian's chromedriver (both installed by scripts/dev.sh; never a browser download, so
the paths are set and selenium-manager is never asked). Import as `browser` (tests/ is on
sys.path); the `chrome` fixture (tests/conftest.py) gives one per test, through running_chrome.

Missing Chromium or its driver skips the test, saying so, except under CI=true: CI installs
both, and a browser test that quietly skips there would be a test that cannot fail."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 1000)
ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-extensions", "--no-first-run",
             f"--window-size={WINDOW[0]},{WINDOW[1]}")


def missing() -> str | None:
    """Why there is no browser to drive, or None."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if absent:
        return (f"{' and '.join(absent)} not installed (Debian packages chromium and chromium-driver; "
                "scripts/dev.sh test installs them)")
    return None


def chrome_driver(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_window_size(*WINDOW)  # --window-size is not honoured by every headless mode
    driver.set_page_load_timeout(30)
    return driver


@contextlib.contextmanager
def running_chrome(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium on a fresh profile in `profile` (no cookie from another test), quit
    after the block."""
    driver = chrome_driver(profile)
    try:
        yield driver
    finally:
        driver.quit()


def skip_or_fail_without_a_browser() -> None:
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and no browser to drive: {reason}", pytrace=False)
    pytest.skip(reason)
