"""The wheel checks: Node, the README page and the PyScript page in Chromium."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from . import prepare
from .browser_check import PageResult, open_page
from .site import build_site

HERE = Path(__file__).resolve().parent
MARK = "WHEEL_CHECK_RESULT "


def check_node(env: dict[str, str] | None = None, timeout: float = 300.0) -> dict:
    """node_check.mjs: micropip-install the wheel in stock Pyodide, chat; its JSON report."""
    wheels = [*prepare.dependency_wheels(), prepare.llamart_wheel()]
    config = {"micropip": str(prepare.micropip_wheel()), "wheels": [str(w) for w in wheels],
              "model": str(prepare.model()), "check": str(HERE / "chat_check.py"),
              "env": env or {}}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(config, f)
        f.flush()
        run = subprocess.run(["node", str(HERE / "node_check.mjs"), f.name], cwd=HERE,
                             capture_output=True, text=True, timeout=timeout)
    for line in run.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"node_check.mjs exited {run.returncode} without a report:\n"
                       f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")


def check_page(kind: str, isolated: bool, timeout: float = 300.0) -> PageResult:
    """Open the README page (``"page"``) or the PyScript page (``"pyscript"``) offline."""
    with tempfile.TemporaryDirectory(prefix="llamart-wheel-site-") as tmp:
        pages = build_site(Path(tmp), prepare.llamart_wheel(), prepare.model(),
                           prepare.micropip_wheel(), prepare.dependency_wheels())
        return open_page(Path(tmp), pages[kind], isolated, timeout)
