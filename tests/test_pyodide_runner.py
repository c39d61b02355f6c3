"""The Pyodide runner runs a test file from anywhere, with the files beside it, in Node and in
Chromium (``python -m tools.pyodide_runner --runtime node|chromium path/to/test_x.py``).

Native only: it starts the runner as a user would, on a small test folder made outside the
checkout (a conftest.py fixture that reads a data file beside it), without the wasm module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.browser import CHROMIUM
from tools.pyodide_runner import paths

pytestmark = pytest.mark.skipif(sys.platform == "emscripten",
                                reason="starts the Pyodide runner: native only")

CONFTEST = '''import pathlib

import pytest


@pytest.fixture
def beside() -> str:
    return (pathlib.Path(__file__).parent / "data" / "words.txt").read_text()
'''
TEST = '''import sys


def test_runs_in_pyodide_with_its_files(beside):
    assert sys.platform == "emscripten"
    assert beside == "files beside the test\\n"
'''


@pytest.mark.parametrize("runtime", ["node", "chromium"])
def test_a_test_file_outside_the_checkout_runs(runtime: str, tmp_path: Path,
                                               fx: dict[str, str]) -> None:
    if runtime == "node" and shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    if runtime == "chromium" and not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not (paths.PYODIDE_DIR / "pyodide.js").exists():
        pytest.skip(f"no Pyodide in {paths.PYODIDE_DIR} (npm ci)")
    folder = tmp_path / "elsewhere"
    (folder / "data").mkdir(parents=True)
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_elsewhere.py").write_text(TEST)
    (folder / "data" / "words.txt").write_text("files beside the test\n")
    results = tmp_path / "results.xml"
    env = dict(os.environ, LLAMART_FIXTURES=os.path.dirname(fx["model_f32"]))
    run = subprocess.run(
        [sys.executable, "-m", "tools.pyodide_runner", "--runtime", runtime, "--without-wasm",
         "--timeout", "300", "--results", str(results), "-q", "test_elsewhere.py"],
        cwd=folder, env={**env, "PYTHONPATH": str(paths.REPO)}, capture_output=True,
        text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    suite = ET.parse(results).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"),
            suite.get("skipped")) == ("1", "0", "0", "0")
    assert "1 passed" in run.stdout
