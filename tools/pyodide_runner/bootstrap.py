"""Runs inside Pyodide: install the wheels, put the checkout first on sys.path, run pytest.

The JS runner executes this file with a global ``CONFIG`` (JSON text) holding ``repo`` (checkout
path in the Pyodide FS), ``wheels`` (pytest's and micropip's wheels: unpacked), ``install``
(jinja2, markupsafe and the llamart Pyodide wheel: ``micropip.install(..., deps=False)``, as
users install them), ``wasm`` (load the module now: tests import ``llamart_wasm``), ``share``
(folders also made visible in the module's FS), ``env`` (variables to set), ``args`` (pytest
arguments) and ``junit`` (where pytest writes its junit xml). Its last expression is pytest's
exit code. llamart is imported from the installed wheel before the checkout goes on sys.path,
so the suite tests the wheel's package.
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


async def install_llamart(config: dict) -> None:
    """micropip-install the llamart wheel and its dependencies' wheels; load the module."""
    import micropip  # type: ignore[import-not-found]

    await micropip.install(["emfs:" + p for p in config["install"]], deps=False)
    import llamart  # noqa: F401 (the wheel's package, before the checkout is on sys.path)

    if config.get("wasm"):
        from llamart.bindings import pyodide_loader

        module = pyodide_loader.ensure_module()
        for folder in config.get("share", []):
            pyodide_loader.share(module, folder)  # a NODEFS mount: mounted in the module too


async def run(config: dict) -> int:
    """Prepare the interpreter as described by ``config`` and return pytest's exit code."""
    install_wheels(config["wheels"])
    os.environ.update(config.get("env", {}))
    if config.get("install"):
        await install_llamart(config)
    repo = config["repo"]
    os.chdir(repo)
    sys.path.insert(0, repo)
    import pytest

    args = list(config["args"])
    if config.get("junit"):
        # xunit1 keeps record_property() values (tests/matrix.py reads them)
        args += [f"--junitxml={config['junit']}", "-o", "junit_family=xunit1"]
    return int(pytest.main(["-p", "no:cacheprovider", *args]))


await run(json.loads(CONFIG))  # noqa: F704, F821 (top-level await in runPythonAsync; CONFIG from JS)
