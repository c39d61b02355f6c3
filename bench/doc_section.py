"""Sections of docs/benchmarks.md owned by one bench job, between HTML-comment markers, so
that ``bench.report`` (which rewrites the rest of the page) and each job keep each other's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import DOC


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def replace_section(doc: Path, name: str, text: str) -> None:
    """Put ``text`` between the markers of ``name`` (appended at the end the first time)."""
    begin, end = markers(name)
    page = doc.read_text() if doc.exists() else ""
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in page and end in page:
        head, rest = page.split(begin, 1)
        page = head + block + rest.split(end, 1)[1]
    else:
        page = page.rstrip() + "\n\n" + block + "\n"
    doc.write_text(page)


def publish(out: Path, data: dict[str, Any], text: str, name: str, write: bool) -> None:
    """A bench job's end: ``data`` saved as JSON to ``out``, ``text`` printed and, with
    ``write``, put in docs/benchmarks.md as section ``name``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(text)
    if write:
        replace_section(DOC, name, text)


def sections(doc: Path) -> str:
    """Every marked section of the page, verbatim (for a rewrite to keep)."""
    page = doc.read_text() if doc.exists() else ""
    out = []
    while "<!-- bench:" in page:
        start = page.index("<!-- bench:")
        name = page[start + len("<!-- bench:"):].split(":", 1)[0]
        _begin, end = markers(name)
        if end not in page[start:]:
            break
        stop = page.index(end, start) + len(end)
        out.append(page[start:stop])
        page = page[stop:]
    return "\n\n".join(out)
