"""Runs inside Pyodide: install the offline wheels, put the checkout first on sys.path, run pytest.

The JS runner executes this file with a global ``CONFIG`` (JSON text) holding ``repo`` (checkout
path in the Pyodide FS), ``wheels`` (wheel file paths), ``env`` (variables to set), ``args``
(pytest arguments) and ``junit`` (where pytest writes its junit xml). Its last expression is
pytest's exit code.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import zipfile


def install_wheels(paths: list[str]) -> None:
    """Unpack pure-Python wheels into site-packages (no installer needed for py3-none-any)."""
    site = sysconfig.get_paths()["purelib"]
    for path in paths:
        with zipfile.ZipFile(path) as wheel:
            wheel.extractall(site)


def run(config: dict) -> int:
    """Prepare the interpreter as described by ``config`` and return pytest's exit code."""
    install_wheels(config["wheels"])
    os.environ.update(config.get("env", {}))
    repo = config["repo"]
    os.chdir(repo)
    sys.path.insert(0, repo)
    import pytest

    args = list(config["args"])
    if config.get("junit"):
        # xunit1 keeps record_property() values (tests/matrix.py reads them)
        args += [f"--junitxml={config['junit']}", "-o", "junit_family=xunit1"]
    return int(pytest.main(["-p", "no:cacheprovider", *args]))


run(json.loads(CONFIG))  # noqa: F821 (CONFIG is set by the JS runner)
