"""Open a page of the check site in Debian's headless Chromium and read what it printed."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..browser import CHROMIUM, CHROMIUM_FLAGS
from ..isolated_http import serve_in_thread

RESULT = re.compile(r"threads: (True|False).*LoRA: (True|False)", re.S)


@dataclass
class PageResult:
    """What a page printed (``#out`` once it has ``data-done``) and what it requested."""

    text: str
    seconds: float
    outside: list[str] = field(default_factory=list)  # requests not to 127.0.0.1
    console: list[str] = field(default_factory=list)

    @property
    def threads(self) -> bool | None:
        m = RESULT.search(self.text)
        return None if m is None else m.group(1) == "True"

    @property
    def lora(self) -> bool | None:
        m = RESULT.search(self.text)
        return None if m is None else m.group(2) == "True"


def open_page(site: Path, page: str, isolated: bool, timeout: float = 300.0) -> PageResult:
    """Serve ``site`` on 127.0.0.1 (COOP/COEP when ``isolated``), load ``page``, wait for it."""
    from playwright.sync_api import sync_playwright

    server, base = serve_in_thread(site, isolated=isolated, name="wheel_check server")
    outside: list[str] = []
    console: list[str] = []
    started = time.monotonic()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                         headless=True)
            page_ = browser.new_page()

            def guard(route, request) -> None:  # nothing leaves 127.0.0.1
                if request.url.startswith(base + "/") or request.url.startswith(("blob:",
                                                                                  "data:")):
                    route.continue_()
                else:
                    outside.append(request.url)
                    route.abort()

            page_.route("**/*", guard)
            page_.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page_.on("pageerror", lambda e: console.append(f"page error: {e}"))
            page_.goto(f"{base}/{page}")
            try:
                page_.wait_for_selector("#out[data-done]", state="attached",
                                        timeout=timeout * 1000)
            except Exception as exc:  # noqa: BLE001 (report what the page showed)
                print(f"wheel_check: {page} did not finish: {exc}", file=sys.stderr)
            text = page_.inner_text("#out")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return PageResult(text, round(time.monotonic() - started, 1), outside, console)
