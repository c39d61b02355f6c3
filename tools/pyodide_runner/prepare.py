"""What a Pyodide run needs, made or found on this machine (nothing fetched but npm/PyPI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..pyodide_wheels import wheel_paths
from . import paths

PYTEST_VERSION = "9.0.3"  # the pytest installed into Pyodide (pure-Python wheels)


def ensure_pyodide() -> Path:
    """The npm pyodide folder, installed with ``npm ci`` when missing or of another version."""
    pkg = paths.PYODIDE_DIR / "package.json"
    wanted = json.loads((paths.REPO / "package.json").read_text())["devDependencies"]["pyodide"]
    if not pkg.exists() or json.loads(pkg.read_text())["version"] != wanted:
        print(f"pyodide_runner: installing pyodide {wanted} with npm ci", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=paths.REPO, check=True)
    return paths.PYODIDE_DIR


def ensure_wheels() -> list[Path]:
    """pytest and its dependencies as pure-Python wheels, downloaded once into .cache/."""
    folder = paths.CACHE / f"pyodide-wheels-pytest-{PYTEST_VERSION}"
    if not list(folder.glob(f"pytest-{PYTEST_VERSION}-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
             "--platform", "any", "--python-version", "3.14", "--implementation", "py",
             f"pytest=={PYTEST_VERSION}", "-d", str(folder)],
            check=True,
        )
    return sorted(folder.glob("*.whl"))


def micropip_wheel() -> Path:
    """micropip's pure wheel (pinned; tools/wheel_check/prepare.py)."""
    from ..wheel_check.prepare import micropip_wheel as pinned

    return pinned()


def pyodide_wheel() -> Path:
    """llamart's Pyodide wheel built from this checkout and the modules of wasm_dir() into
    dist/ (``python -m wasm.wheel``: a few seconds), so the run tests what users install."""
    from wasm.wheel import build_wheel

    started = time.monotonic()
    wheel = build_wheel(paths.REPO / "dist", paths.wasm_dir())
    print(f"pyodide_runner: {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB, "
          f"{time.monotonic() - started:.1f} s)", flush=True)
    return wheel


def runtime_wheels() -> list[Path]:
    """llamart's runtime dependencies as pure wheels (jinja2, markupsafe: tools/pyodide_wheels),
    so ``llamart.chat.template`` imports inside Pyodide."""
    return wheel_paths()


def host_data() -> tuple[dict[str, list[Path]], dict[str, str]]:
    """The host files a run makes visible in Pyodide at their (resolved) host paths, by folder,
    and the env variables naming them (read by tests/conftest.py).

    The pinned real models verified in the model cache (``make models`` fetches them) ->
    ``LLAMART_REAL_MODELS`` (JSON {name: path}); llama.cpp's vocabulary files with their test
    cases in the pinned source -> ``LLAMART_LLAMA_CPP_VOCAB``. What is missing is left out
    (the tests needing it skip, saying why).
    """
    from llamart import pinned_models

    from ..llama_cpp_pin import vocab_dir

    folders: dict[str, list[Path]] = {}
    models: dict[str, str] = {}
    for name in pinned_models.PINS:
        path = pinned_models.cached_path(name)
        if path is not None:
            path = path.resolve()
            models[name] = str(path)
            folders.setdefault(str(path.parent), []).append(path)
    env = {"LLAMART_REAL_MODELS": json.dumps(models)}
    vocab = vocab_dir().resolve()
    if vocab.is_dir():
        folders[str(vocab)] = sorted(vocab.glob("ggml-vocab-*"))
        env["LLAMART_LLAMA_CPP_VOCAB"] = str(vocab)
    return folders, env


def make_fixtures() -> Path:
    """Test fixtures made natively (gguf needs numpy, which Pyodide lacks)."""
    if os.environ.get("LLAMART_FIXTURES"):
        return Path(os.environ["LLAMART_FIXTURES"]).resolve()
    out = paths.CACHE / "fixtures"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "llamart.testing.fixtures", str(out)], cwd=paths.REPO, check=True
    )
    print(f"pyodide_runner: fixtures in {out} ({time.monotonic() - started:.1f} s)", flush=True)
    return out


def find_wasm(required: bool) -> dict | None:
    """The llamart WebAssembly builds: {glue, wasm} (single-threaded) and, when built,
    ``threaded`` {glue, wasm, worker}; exits saying how to build them."""
    folder = paths.wasm_dir()
    single = {k: folder / name for k, name in paths.WASM_FILES["single"].items()}
    if all(f.exists() for f in single.values()):
        found: dict = {**{k: str(f) for k, f in single.items()}, "threaded": None}
        mt = {k: folder / name for k, name in paths.WASM_FILES["threads"].items()}
        if all(f.exists() for f in mt.values()):
            found["threaded"] = {k: str(f) for k, f in mt.items()}
        return found
    message = (f"no WebAssembly build in {folder}: build it with `python -m wasm.build` "
               "(see wasm/README.md) or set LLAMART_WASM_DIR")
    if required:
        raise SystemExit(f"pyodide_runner: {message}")
    print(f"pyodide_runner: WARNING: {message}; `import llamart_wasm` will fail in Pyodide",
          file=sys.stderr, flush=True)
    return None
