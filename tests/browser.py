"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) and a real local
HTTP server, for tests of pages overton writes. ``make test`` installs Chromium (its ``browser`` target); a test
run without it skips these tests and says how to get it.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def chromium() -> tuple[str, str]:
    """(browser, driver) executables; skips the test when either is missing."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no Chromium here: install Debian's chromium and chromium-driver (`make test` does: "
                    "`make browser`) to run the browser tests")
    return browser, driver


@contextlib.contextmanager
def headless(width: int = 1280, height: int = 900) -> Iterator:
    """A Selenium driver of a headless Chromium whose console messages are kept (``driver.get_log("browser")``);
    the browser and its driver are stopped on the way out."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--force-device-scale-factor=1",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    if os.geteuid() == 0:  # Chromium refuses to run as root inside its sandbox
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-") -> None:
        self.server.requests.append((self.path, int(code)))

    def log_message(self, format, *args) -> None:  # noqa: A002 (the standard library's name)
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """A static HTTP server of ``folder`` on 127.0.0.1 (a free port), in a thread; ``server.base`` is its URL and
    ``server.requests`` the (path, status) of every request it answered."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    server.requests = []
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
