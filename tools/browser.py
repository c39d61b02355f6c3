"""Debian's headless Chromium driven through Playwright (never ``playwright install``)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def run_page(url: str, done: threading.Event, timeout: float, *,
             extra_flags: Sequence[str] = (), echo_console: bool = False,
             name: str = "browser") -> bool:
    """Open ``url`` in headless Chromium and wait until ``done`` is set (by the page posting to
    the server), the page closes or ``timeout`` seconds pass. Returns whether ``done`` was set.
    With ``echo_console``, the page's console errors and warnings go to stderr."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=[*extra_flags, *CHROMIUM_FLAGS], headless=True)
        page = browser.new_page()
        if echo_console:
            page.on("console", lambda msg: msg.type in ("error", "warning") and print(
                f"[{name} {msg.type}] {msg.text}", file=sys.stderr, flush=True))
            page.on("pageerror", lambda err: print(f"[{name} page error] {err}",
                                                   file=sys.stderr, flush=True))
        page.goto(url)
        waited = 0.0
        while not done.is_set() and not page.is_closed() and waited <= timeout:
            page.wait_for_timeout(250)
            waited += 0.25
        browser.close()
    return done.is_set()
