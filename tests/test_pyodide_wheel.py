"""The Pyodide wheel (``make pyodide-wheel``), installed the way its users install it.

Natively: the wheel's name, tag and contents; a native pip refuses it; a missing module file is
named; the loader names what an unfit runtime lacks. Then, with the built wheel in dist/ and
SmolLM2 (``make models``): stock Pyodide in Node with micropip (deps=False + local jinja2 and
markupsafe wheels), the README's page in Chromium isolated and not, and the README's PyScript
page (local @pyscript/core and Pyodide). Each must answer Paris, with LoRA off and threads
exactly where the runtime allows them (tools/wheel_check).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform == "emscripten", reason="builds the wheel, drives Node and a browser: native only"
)

REPO = Path(__file__).resolve().parents[1]
LOADER_JS = REPO / "llamart" / "bindings" / "pyodide_loader.js"


@pytest.fixture(scope="module")
def built_wheel() -> Path:
    """dist/'s wheel, as `make pyodide-wheel` (run before the tests in `make test`) left it."""
    from wasm import wheel as wheel_build

    path = REPO / "dist" / wheel_build.wheel_name()
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make pyodide-wheel`", pytrace=False)
    return path


def test_wheel_name_contents_and_metadata(built_wheel: Path) -> None:
    from wasm import wheel as wheel_build

    assert built_wheel.name.endswith("-py3-none-pyemscripten_2026_0_wasm32.whl")
    with zipfile.ZipFile(built_wheel) as zf:
        names = set(zf.namelist())
        infos = {i.filename: i for i in zf.infolist()}
        dist = f"llamart-{wheel_build.version()}.dist-info"
        meta = zf.read(f"{dist}/METADATA").decode()
        tag = zf.read(f"{dist}/WHEEL").decode()
        record = zf.read(f"{dist}/RECORD").decode()
    for name in wheel_build.MODULE_FILES:
        assert f"llamart/_wasm/{name}" in names
        assert infos[f"llamart/_wasm/{name}"].compress_type == zipfile.ZIP_DEFLATED
    assert {"llamart/__init__.py", "llamart/bindings/pyodide_loader.py",
            "llamart/bindings/pyodide_loader.js", "llamart/py.typed"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".so", ".pyc"))
                or n.startswith("llamart/data/")]  # the native LoRA demo's files
    assert "Requires-Dist: jinja2>=3.1.6" in meta
    assert "Tag: py3-none-pyemscripten_2026_0_wasm32" in tag
    assert len(record.splitlines()) == len(names)
    wasm = infos["llamart/_wasm/llamart_wasm_mt.wasm"]
    assert wasm.compress_size < 0.7 * wasm.file_size  # compressed


def test_native_pip_refuses_the_wheel(built_wheel: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                          "--no-index", str(built_wheel)], capture_output=True, text=True)
    assert run.returncode != 0
    assert "is not a supported wheel on this platform" in run.stderr


def test_a_missing_module_file_is_named(tmp_path: Path) -> None:
    from wasm import wheel as wheel_build

    for name in wheel_build.MODULE_FILES[:-1]:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(SystemExit, match="llamart_wasm_mt.worker.js missing"):
        wheel_build.build_wheel(tmp_path / "out", tmp_path)


def _loader_in_node(prelude: str, expression: str) -> Any:
    """Evaluate pyodide_loader.js in plain Node after ``prelude``; the JSON of ``expression``."""
    script = (f"{prelude};const loader = eval(require('fs').readFileSync("
              f"{json.dumps(str(LOADER_JS))}, 'utf8'));console.log(JSON.stringify({expression}))")
    run = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


def test_the_loader_names_what_an_unfit_runtime_lacks() -> None:
    assert _loader_in_node("", "loader.missing()") == ""
    lacking = _loader_in_node("delete WebAssembly.Tag", "loader.missing()")
    assert "WebAssembly exception handling" in lacking
    old_node = _loader_in_node("delete process.getBuiltinModule", "loader.missing()")
    assert "Node >= 20.16" in old_node
    try:
        _loader_in_node("delete WebAssembly.Tag",
                        "loader.load({name: 'llamart_wasm.js', glue: '', wasm: null})")
    except subprocess.CalledProcessError as e:
        assert "this runtime lacks WebAssembly exception handling" in e.stderr
    else:
        raise AssertionError("load() ran without WebAssembly exceptions")


def _expect_paris(reply: str, lora: Any, threads: Any, want_threads: bool) -> None:
    assert "Paris" in reply, reply
    assert lora is False
    assert threads is want_threads


def test_node_micropip_install_then_chat(built_wheel: Path, record_property: Any) -> None:
    from tools.wheel_check.checks import check_node

    report = check_node()
    _expect_paris(report["reply"], report["lora"], report["threads"], True)
    assert report["build"] == "threads" and report["max_threads"] >= 1
    assert report["lazy"] is True  # importing llamart loaded no module
    assert "/site-packages/llamart/" in report["llamart_file"]
    record_property("behaviour", f"{report['reply']!r}, threads, {report['seconds']}")


@pytest.mark.parametrize("kind", ["page", "pyscript"])
@pytest.mark.parametrize("isolated", [True, False], ids=["isolated", "not-isolated"])
def test_readme_pages_in_chromium(built_wheel: Path, kind: str, isolated: bool,
                                  record_property: Any) -> None:
    from tools.wheel_check.checks import check_page

    result = check_page(kind, isolated)
    assert result.outside == []  # nothing left 127.0.0.1
    assert result.threads is not None, f"{result.text}\n{result.console}"
    _expect_paris(result.text, result.lora, result.threads, isolated)
    record_property("behaviour", f"{result.text.splitlines()[0]!r} in {result.seconds} s")
