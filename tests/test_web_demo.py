"""The in-browser demo (web_demo/), served by web_demo/server.py, driven in Chromium.

Native only: serves the page on 127.0.0.1, opens it in Debian's chromium through Playwright
(never `playwright install`), loads the demo model in the page's worker (Pyodide + the llamart
WebAssembly module), and checks what a user sees: streamed greedy text equal to the native
backend's, Stop, the LoRA panel, errors in plain words, nothing fetched from elsewhere.
A missing WebAssembly build or browser is a failure saying how to get it, never a skip.
Screenshots land in tests/.artifacts/ (web_demo.png, web_demo-narrow.png).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform == "emscripten", reason="serves the demo and drives a browser: native only"
)

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / ".artifacts"
PROMPT = "Once upon a time"
GREEDY_TOKENS = 40
TIMEOUT_MS = 240_000  # Pyodide + the module on a busy 2-core machine


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from web_demo import server as wds

    try:
        wds.locate_wasm()
    except wds.WebDemoError as e:
        pytest.fail(str(e), pytrace=False)
    return wds.prepare(cache_dir=tmp_path_factory.mktemp("web_demo"))


@pytest.fixture(scope="module")
def base_url(site: Any) -> Iterator[str]:
    from web_demo import server as wds

    httpd, url = wds.serve_in_thread(site)
    try:
        yield url
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def native_info(site: Any) -> dict[str, Any]:
    """The native backend's view of the demo model: facts and the greedy completion."""
    from llamart import Engine

    model = str(site.mounts["/demo/"] / site.config["demoModel"]["name"])
    with Engine("native") as engine:
        info = engine.load_model(model, n_ctx=site.config["demoModel"]["nCtx"], n_threads=1)
        text = engine.complete(PROMPT, max_tokens=GREEDY_TOKENS, temperature=0.0, top_k=40,
                               top_p=0.95)
        return {"n_params": info.n_params, "greedy": text, "usage": engine.last_usage}


class Browser:
    """One Chromium page on the demo, with what it requested and complained about."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.requests: list[str] = []
        self.problems: list[str] = []

    def state(self) -> str:
        return str(self.page.get_attribute("body", "data-state"))

    def wait_state(self, *states: str, timeout: int = TIMEOUT_MS) -> None:
        self.page.wait_for_function(
            "states => states.includes(document.body.dataset.state)", arg=list(states),
            timeout=timeout)

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector) or "")


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[Browser]:
    from tools.browser import CHROMIUM, CHROMIUM_FLAGS

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install chromium`",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                      headless=True)
        context = chromium.new_context(viewport={"width": 1000, "height": 900})
        page = context.new_page()
        b = Browser(page, base_url)
        context.on("request", lambda r: b.requests.append(r.url))
        page.on("pageerror", lambda e: b.problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and b.problems.append(
            f"console error: {m.text}"))
        page.goto(base_url + "/")
        try:
            b.wait_state("idle", "broken")
        except Exception:
            pytest.fail(f"the demo did not start; status: {b.text('#status')!r}, "
                        f"problems: {b.problems}", pytrace=False)
        assert b.state() == "idle", f"the engine did not start: {b.text('#error-text')}"
        page.click("#load")  # the demo model is the default choice
        b.wait_state("ready", "idle", "broken")
        assert b.state() == "ready", f"the demo model did not load: {b.text('#error-text')}"
        try:
            yield b
        finally:
            context.close()
            chromium.close()


def _set(page: Any, selector: str, value: str) -> None:
    page.fill(selector, value)


def _generate(b: Browser, *, max_tokens: int, temperature: float, prompt: str = PROMPT,
              seed: str = "", keyboard: bool = False) -> None:
    page = b.page
    _set(page, "#prompt", prompt)
    _set(page, "#max-tokens", str(max_tokens))
    _set(page, "#temperature", str(temperature))
    _set(page, "#top-k", "40")
    _set(page, "#top-p", "0.95")
    _set(page, "#seed", seed)
    if keyboard:
        page.focus("#prompt")
        page.keyboard.press("Control+Enter")
    else:
        page.click("#generate")


# ---- serving (HTTP only) ----

def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, b""


def test_serves_the_page_with_isolation_headers_and_mime_types(base_url: str) -> None:
    status, headers, body = _get(base_url + "/")
    assert status == 200 and b"<title>llamart in the browser</title>" in body
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert headers["content-type"].startswith("text/html")
    for path, mime in [("/wasm/llamart_wasm.wasm", "application/wasm"),
                       ("/pyodide/pyodide.asm.wasm", "application/wasm"),
                       ("/pyodide/pyodide.mjs", "text/javascript"),
                       ("/pyodide/pyodide.js", "text/javascript"),
                       ("/wasm/llamart_wasm.js", "text/javascript"),
                       ("/wasm/llamart_pyodide.js", "text/javascript"),
                       ("/worker.js", "text/javascript"),
                       ("/demo/demo-model.gguf", "application/octet-stream")]:
        status, headers, _ = _get(base_url + path)
        assert status == 200, path
        assert headers["content-type"].split(";")[0] == mime, path
        assert headers["cross-origin-embedder-policy"] == "require-corp", path


def test_serves_nothing_else_of_the_checkout(base_url: str) -> None:
    for path in ("/pyproject.toml", "/../pyproject.toml", "/%2e%2e/pyproject.toml",
                 "/llamart/engine.py", "/demo/../../../pyproject.toml", "/pyodide/",
                 "/wasm/", "/.git/HEAD", "/server.py", "/__init__.py", "/README.md"):
        status, _, body = _get(base_url + path)
        assert status == 404, f"{path} gave HTTP {status}: {body[:80]!r}"


def test_page_names_no_external_url(site: Any) -> None:
    for path in sorted((REPO / "web_demo").iterdir()):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"(https?:)?//[a-z0-9-]+\.[a-z0-9.-]+", text, re.I), path
    urls = json.dumps(site.config)
    assert "http" not in urls and "//" not in urls


def test_wheel_is_a_valid_pure_python_wheel(site: Any, base_url: str) -> None:
    status, _, data = _get(base_url + site.config["wheel"])
    assert status == 200
    assert site.config["wheel"].endswith("-py3-none-any.whl")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        version = site.config["llamartVersion"]
        dist = f"llamart-{version}.dist-info"
        assert {"llamart/__init__.py", "llamart/engine.py", "llamart/web.py",
                "llamart/backends/wasm.py", f"{dist}/WHEEL", f"{dist}/METADATA",
                f"{dist}/RECORD"} <= set(names)
        assert not [n for n in names if n.endswith((".so", ".pyc")) or "/_lib/" in n]
        assert "Tag: py3-none-any" in zf.read(f"{dist}/WHEEL").decode()
        assert f"Version: {version}" in zf.read(f"{dist}/METADATA").decode()
        rows = list(csv.reader(io.StringIO(zf.read(f"{dist}/RECORD").decode())))
        assert {r[0] for r in rows} == set(names)
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                continue
            content = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
            assert digest == "sha256=" + want.decode() and int(size) == len(content), name


def test_missing_wasm_build_names_the_build_command(tmp_path: Path) -> None:
    from web_demo import server as wds

    with pytest.raises(wds.WebDemoError, match=re.escape(wds.WASM_BUILD_COMMAND)):
        wds.locate_wasm(tmp_path)
    assert wds.main(["--wasm-dir", str(tmp_path), "--prepare-only"]) == 1


def test_the_demo_is_not_a_command_of_the_installed_package(capsys) -> None:
    from llamart.cli import main

    with pytest.raises(SystemExit) as info:  # `python -m web_demo` serves it, from a checkout
        main(["web-demo"])
    assert info.value.code == 2 and "invalid choice: 'web-demo'" in capsys.readouterr().err


# ---- the page in Chromium ----

def test_demo_model_loads_and_its_info_is_shown(browser: Browser,
                                                native_info: dict[str, Any]) -> None:
    page = browser.page
    assert page.is_visible("#model-info")
    params = page.text_content('#model-info dd[data-key="Parameters"]')
    assert params == f"{native_info['n_params']:,}"
    assert page.text_content('#model-info dd[data-key="Model"]') == "demo-model.gguf"
    assert page.text_content('#model-info dd[data-key="general.name"]') == "llamart-web-demo"
    assert browser.text("#backend").startswith("wasm")
    assert "Model loaded" in browser.text("#status")


def test_every_control_has_a_label(browser: Browser) -> None:
    unlabeled = browser.page.evaluate("""() => [...document.querySelectorAll(
        'input, textarea, select')].filter(el => !(el.labels && el.labels.length)
        && !el.getAttribute('aria-label')).map(el => el.id || el.name)""")
    assert unlabeled == []


def test_greedy_generation_streams_and_equals_native(browser: Browser,
                                                     native_info: dict[str, Any]) -> None:
    page = browser.page
    assert len(native_info["greedy"]) > 0
    page.evaluate("""() => {
        window.__snapshots = [];
        const out = document.getElementById('output-text');
        window.__observer = new MutationObserver(
            () => window.__snapshots.push(out.textContent));
        window.__observer.observe(out, {childList: true, characterData: true, subtree: true});
    }""")
    _generate(browser, max_tokens=GREEDY_TOKENS, temperature=0.0)
    browser.wait_state("generating", "ready")
    browser.page.wait_for_selector("#gen-stats[data-reason]", timeout=TIMEOUT_MS)
    browser.wait_state("ready")
    snapshots = page.evaluate("() => { window.__observer.disconnect(); "
                              "return window.__snapshots; }")
    final = browser.text("#output-text")
    assert final == native_info["greedy"]
    partial = [s for s in dict.fromkeys(snapshots) if s and s != final]
    assert len(partial) >= 3, f"text did not appear incrementally: {snapshots!r}"
    assert all(final.startswith(s) for s in partial)
    assert int(page.get_attribute("#output", "data-updates") or 0) >= 4
    reason = page.get_attribute("#gen-stats", "data-reason")
    assert reason == ("length" if native_info["usage"]["completion_tokens"] == GREEDY_TOKENS
                      else "stop")


def test_stop_cancels_a_long_generation(browser: Browser) -> None:
    page = browser.page
    # seed 1234: this sampled run goes the full 2000 tokens natively (no end-of-text token)
    _generate(browser, max_tokens=2000, temperature=0.8, seed="1234")
    page.wait_for_function(
        "() => Number(document.getElementById('output').dataset.updates || 0) >= 3",
        timeout=TIMEOUT_MS)
    assert browser.state() == "generating"
    assert page.is_enabled("#stop") and not page.is_enabled("#generate")
    page.click("#stop")
    browser.wait_state("ready")
    assert page.get_attribute("#gen-stats", "data-reason") == "cancelled"
    produced = int(page.get_attribute("#gen-stats", "data-tokens") or 0)
    assert 3 <= produced < 2000
    text = browser.text("#output-text")
    page.wait_for_timeout(300)
    assert browser.text("#output-text") == text  # nothing arrives after the stop
    assert "stopped" in browser.text("#gen-stats")


def test_lora_panel_shows_capability_and_set_lora_result(browser: Browser) -> None:
    from llamart.backends.wasm import LORA_REASON

    page = browser.page
    assert browser.text("#lora-flag") == "False"
    assert browser.text("#lora-reason") == LORA_REASON
    assert "rank 8" in browser.text("#adapter-info")
    _set(page, "#lora-scale", "0.7")
    page.click("#apply-lora")
    page.wait_for_selector("#lora-result:not([hidden])", timeout=TIMEOUT_MS)
    result = browser.text("#lora-result")
    lines = result.splitlines()
    assert lines[0] == '>>> engine.set_lora("demo-lora.gguf", 0.7)'
    assert f"LoraUnsupportedWarning: {LORA_REASON}" in lines
    assert lines[-3:] == ["False", ">>> engine.loras", "{}"]
    assert page.get_attribute("#lora-result", "data-applied") == "false"
    assert browser.state() == "ready"


def test_a_non_gguf_file_is_reported_and_the_page_keeps_working(
        browser: Browser, native_info: dict[str, Any], tmp_path: Path) -> None:
    page = browser.page
    bad = tmp_path / "notes.gguf"
    bad.write_text("These are my notes, not a model.\n" * 20)
    page.set_input_files("#model-file", str(bad))
    assert page.is_checked('input[name="source"][value="file"]')
    page.click("#load")
    page.wait_for_selector("#error:not([hidden])", timeout=TIMEOUT_MS)
    browser.wait_state("ready", "idle", "broken")
    message = browser.text("#error-text")
    assert "notes.gguf" in message and "not a GGUF file" in message
    assert "demo-model.gguf" in message and "still loaded" in message
    assert "/models/" not in message  # paths inside the worker are not shown
    assert browser.state() == "ready"
    assert page.text_content('#model-info dd[data-key="Model"]') == "demo-model.gguf"
    # the engine still works, driven from the keyboard this time
    _generate(browser, max_tokens=8, temperature=0.0, keyboard=True)
    page.wait_for_selector("#gen-stats[data-reason]", timeout=TIMEOUT_MS)
    browser.wait_state("ready")
    assert native_info["greedy"].startswith(browser.text("#output-text"))
    assert browser.text("#output-text")
    assert page.is_hidden("#error")  # a new action clears the old error


def test_too_large_model_and_too_long_prompt_are_reported(browser: Browser,
                                                         tmp_path: Path) -> None:
    page = browser.page
    huge = tmp_path / "huge.gguf"
    with open(huge, "wb") as f:  # sparse: 4 GiB on paper, nothing on disk
        f.truncate(4 * 2**30)
    page.set_input_files("#model-file", str(huge))
    page.click("#load")
    page.wait_for_selector("#error:not([hidden])", timeout=TIMEOUT_MS)
    browser.wait_state("ready", "idle", "broken")
    message = browser.text("#error-text")
    assert "huge.gguf" in message and "too large" in message and "still loaded" in message
    assert browser.state() == "ready"
    page.click("#error-dismiss")
    assert page.is_hidden("#error")

    _generate(browser, max_tokens=8, temperature=0.0, prompt="word " * 3000)
    page.wait_for_selector("#error:not([hidden])", timeout=TIMEOUT_MS)
    browser.wait_state("ready", "idle", "broken")
    assert "too long for this model's context window" in browser.text("#error-text")
    assert browser.state() == "ready"


def test_screenshots_and_narrow_window(browser: Browser) -> None:
    page = browser.page
    page.set_input_files("#model-file", [])
    page.check('input[name="source"][value="demo"]')
    _generate(browser, max_tokens=GREEDY_TOKENS, temperature=0.0)
    page.wait_for_selector("#gen-stats[data-reason]", timeout=TIMEOUT_MS)
    browser.wait_state("ready")
    _set(page, "#lora-scale", "1.0")
    page.click("#apply-lora")
    page.wait_for_selector("#lora-result:not([hidden])")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    wide = ARTIFACTS / "web_demo.png"
    page.screenshot(path=str(wide), full_page=True)
    page.set_viewport_size({"width": 360, "height": 800})
    overflow = page.evaluate("() => document.documentElement.scrollWidth - "
                             "document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways at 360 px ({overflow} px too wide)"
    narrow = ARTIFACTS / "web_demo-narrow.png"
    page.screenshot(path=str(narrow), full_page=True)
    page.set_viewport_size({"width": 1000, "height": 900})
    for shot in (wide, narrow):
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, shot


def test_nothing_was_fetched_from_outside_and_nothing_failed(browser: Browser,
                                                            site: Any) -> None:
    requested = browser.requests
    for must in ("/worker.js", site.config["wheel"], "/wasm/llamart_wasm.wasm",
                 "/pyodide/pyodide.asm.wasm", "/demo/demo-model.gguf"):
        assert any(u == browser.base_url + must for u in requested), f"{must} not seen"
    outside = [u for u in requested
               if not u.startswith((browser.base_url + "/", "data:", "blob:"))]
    assert outside == []
    assert browser.problems == []
