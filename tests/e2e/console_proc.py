"""`orderflow console` as a real process for the browser test, its users made with `orderflow console user add`,
and headless Debian Chromium driven by Selenium through Debian's chromium-driver."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from orderflow.console.cli import answers
from orderflow.dev import stack
from tests.e2e.dashboard_proc import ORDERFLOW, running

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def add_user(name: str, role: str, password: str) -> None:
    """`orderflow console user add NAME --role ROLE --password-stdin`."""
    subprocess.run(
        [ORDERFLOW, "console", "user", "add", name, "--role", role, "--password-stdin"],
        input=password + "\n", text=True, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@contextmanager
def console(*args: str) -> Iterator[str]:
    """Run the console on a free port until the block ends; yields its URL once it answers."""
    port = stack.unused_port()
    url = f"http://127.0.0.1:{port}"
    with running("console", "--port", str(port), *args, timeout=20) as proc:
        assert answers(url + "/login", proc), "the console did not start"
        yield url


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Headless Debian Chromium under Debian's chromedriver (no driver or browser download)."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "Chromium or its driver is missing: `make browser` installs Debian's chromium and chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1440,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
