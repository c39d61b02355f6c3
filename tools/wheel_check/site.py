"""The folder a browser check serves: the README's page (its documented offline change
applied), the PyScript page, a local Pyodide distribution, the wheel and the model.

``pyodide/`` stands in for Pyodide's full distribution offline: the npm package's files plus
micropip, jinja2 and a pure markupsafe wheel, with ``pyodide-lock.json`` pointing its entries
for those three at them (by sha256), so ``loadPackage("micropip")`` and micropip's dependency
resolution work as with the release archive. Everything is a link or a small generated file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..pyodide_runner import paths

README = paths.REPO / "README.md"
PYODIDE_CDN = "https://cdn.jsdelivr.net/pyodide/v314.0.7/full/"
PYSCRIPT_CDN = "https://cdn.jsdelivr.net/npm/@pyscript/core@0.7.31/dist/"
PYSCRIPT_DIST = paths.REPO / "node_modules" / "@pyscript" / "core" / "dist"
SECTION = "## llamart in your own page"


def readme_pages() -> tuple[str, str]:
    """The plain page and the PyScript page, as the README's section shows them."""
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    section = text[start:text.index("\n## ", start + len(SECTION))]
    pages = re.findall(r"```html\n(.*?)```", section, flags=re.S)
    if len(pages) != 2:
        raise SystemExit(f"wheel_check: README's {SECTION!r} shows {len(pages)} html pages, "
                         "expected 2 (the page, the PyScript page)")
    return pages[0], pages[1]


def offline(page: str, pyscript: bool) -> str:
    """The README's offline change: local Pyodide (and local PyScript)."""
    if PYODIDE_CDN + "pyodide.js" not in page and not pyscript:
        raise SystemExit(f"wheel_check: the README page does not load {PYODIDE_CDN}pyodide.js")
    page = page.replace(PYODIDE_CDN, "pyodide/")
    if pyscript:
        if PYSCRIPT_CDN not in page or '"packages"' not in page:
            raise SystemExit(f"wheel_check: the README's PyScript page does not use {PYSCRIPT_CDN}")
        page = page.replace(PYSCRIPT_CDN, "pyscript/")
        page = page.replace('{"packages":', '{"interpreter": "./pyodide/pyodide.mjs", "packages":')
    return page


def _integrity(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_pyodide(dest: Path, extra: dict[str, Path]) -> None:
    """Links to the npm package's files, plus ``extra`` wheels {lock name: wheel} in the lock."""
    dest.mkdir(parents=True)
    for f in paths.PYODIDE_DIR.iterdir():
        if f.name != "pyodide-lock.json":
            (dest / f.name).symlink_to(f)
    lock = json.loads((paths.PYODIDE_DIR / "pyodide-lock.json").read_text())
    for name, wheel in extra.items():
        entry = lock["packages"][name]
        version = wheel.name.split("-")[1]
        entry.update(file_name=wheel.name, sha256=_integrity(wheel), version=version)
        (dest / wheel.name).symlink_to(wheel)
    (dest / "pyodide-lock.json").write_text(json.dumps(lock))


def build_site(dest: Path, wheel: Path, model: Path, micropip: Path,
               dependencies: list[Path]) -> dict[str, str]:
    """Fill ``dest``; returns {page kind: file name}."""
    plain, pyscript = readme_pages()
    for page in (plain, pyscript):
        for needed in (wheel.name, model.name):
            if needed not in page:
                raise SystemExit(f"wheel_check: the README page does not name {needed}")
    by_name = {w.name.split("-")[0].lower(): w for w in dependencies}
    local_pyodide(dest / "pyodide", {"micropip": micropip, "jinja2": by_name["jinja2"],
                                     "markupsafe": by_name["markupsafe"]})
    (dest / "pyscript").symlink_to(PYSCRIPT_DIST)
    (dest / wheel.name).symlink_to(wheel)
    (dest / model.name).symlink_to(model)
    (dest / "favicon.ico").write_bytes(b"")
    (dest / "index.html").write_text(offline(plain, pyscript=False), encoding="utf-8")
    (dest / "pyscript.html").write_text(offline(pyscript, pyscript=True), encoding="utf-8")
    return {"page": "index.html", "pyscript": "pyscript.html"}

