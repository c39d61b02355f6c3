"""The chat-template renderer inside Pyodide (Node) against CPython, on llama.cpp's real templates.

``python -m tools.chat_template_pyodide`` renders every template of the pinned llama.cpp source x
tools/chat_conversations.py natively, then the same in Pyodide under Node (jinja2 and a pure
markupsafe wheel from tools/pyodide_wheels.py, offline), compares the outputs byte for byte and
reports compile and render times of both. Exit status 0 when every render (and every refusal)
agrees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.chat_conversations import BOS, CONVERSATIONS, EOS, llama_cpp_templates
from tools.pyodide_wheels import REPO, wheel_paths

# Runs in both interpreters: {template name: [rendered text or "ERROR: ..."]}, and timings.
RENDER_ALL = r'''
import json, os, time
from llamart.chat.template import ChatTemplate
from llamart.errors import ChatTemplateError

def render_all(paths, conversations, bos, eos, repeat):
    out, compile_s, render_s, n = {}, 0.0, 0.0, 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        name = os.path.basename(path)
        t0 = time.perf_counter()
        try:
            t = ChatTemplate(src, bos_token=bos, eos_token=eos, name=name)
        except ChatTemplateError as e:
            out[name] = ["ERROR: " + str(e)]
            continue
        compile_s += time.perf_counter() - t0
        results = []
        for conv in conversations.values():
            for agp in (True, False):
                try:
                    t0 = time.perf_counter()
                    for _ in range(repeat):
                        text = t.render(conv, add_generation_prompt=agp,
                                        date_string="26 Jul 2024")
                    render_s += (time.perf_counter() - t0) / repeat
                    n += 1
                    results.append(text)
                except ChatTemplateError as e:
                    results.append("ERROR: " + str(e))
        out[name] = results
    return {"out": out, "compile_ms": 1e3 * compile_s / max(len(paths), 1),
            "render_ms": 1e3 * render_s / max(n, 1), "renders": n}
'''

NODE = r'''
"use strict";
const fs = require("fs");
const path = require("path");
async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const { loadPyodide } = require(path.join(cfg.pyodideDir, "pyodide.js"));
  const t0 = Date.now();
  const py = await loadPyodide({ indexURL: cfg.pyodideDir + "/" });
  for (const dir of cfg.mounts) {
    py.FS.mkdirTree(dir);
    py.FS.mount(py.FS.filesystems.NODEFS, { root: dir }, dir);
  }
  py.globals.set("CFG", JSON.stringify(cfg));
  const result = await py.runPythonAsync(cfg.code);
  fs.writeFileSync(cfg.out, result);
  process.stderr.write(`pyodide started and ran in ${(Date.now() - t0) / 1000} s\n`);
}
main().catch((e) => { console.error(e && e.stack ? e.stack : e); process.exit(3); });
'''

PYODIDE_MAIN = r'''
import json, sys, sysconfig, zipfile
cfg = json.loads(CFG)
for w in cfg["wheels"]:
    zipfile.ZipFile(w).extractall(sysconfig.get_paths()["purelib"])
sys.path.insert(0, cfg["repo"])
''' + RENDER_ALL + r'''
json.dumps(render_all(cfg["paths"], cfg["conversations"], cfg["bos"], cfg["eos"], cfg["repeat"]))
'''


def main() -> int:
    paths = [str(Path(p).resolve()) for p in llama_cpp_templates()]  # no symlinks in Node's FS
    if not paths:
        print("no llama.cpp templates (the pinned source in .cache is missing)", file=sys.stderr)
        return 2
    repeat = 20
    scope: dict[str, object] = {}
    exec(RENDER_ALL, scope)  # the same code natively
    native = scope["render_all"](paths, CONVERSATIONS, BOS, EOS, repeat)  # type: ignore[operator]
    wheels = [str(w.resolve()) for w in wheel_paths()]
    mounts = sorted({str(REPO), str(Path(paths[0]).parent), str(Path(wheels[0]).parent)})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"mounts": mounts, "pyodideDir": str(REPO / "node_modules" / "pyodide"),
               "repo": str(REPO), "paths": paths,
               "conversations": CONVERSATIONS, "bos": BOS, "eos": EOS, "repeat": repeat,
               "wheels": wheels, "code": PYODIDE_MAIN,
               "out": str(Path(tmp) / "out.json")}
        (Path(tmp) / "cfg.json").write_text(json.dumps(cfg))
        (Path(tmp) / "run.cjs").write_text(NODE)
        t0 = time.monotonic()
        subprocess.run(["node", str(Path(tmp) / "run.cjs"), str(Path(tmp) / "cfg.json")],
                       check=True)
        wall = time.monotonic() - t0
        pyo = json.loads(Path(cfg["out"]).read_text())
    same = sum(a == b for name in native["out"]
               for a, b in zip(native["out"][name], pyo["out"].get(name, []), strict=False))
    total = sum(len(v) for v in native["out"].values())
    errors = sum(r.startswith("ERROR") for v in native["out"].values() for r in v)
    print(f"{len(paths)} templates, {total} results ({errors} refusals): {same} identical "
          f"between CPython and Pyodide/Node")
    print(f"CPython: compile {native['compile_ms']:.1f} ms/template, render "
          f"{native['render_ms']:.3f} ms/render; Pyodide: compile {pyo['compile_ms']:.1f} ms, "
          f"render {pyo['render_ms']:.3f} ms ({wall:.1f} s in Node)")
    return 0 if same == total and pyo["out"].keys() == native["out"].keys() else 1


if __name__ == "__main__":
    sys.exit(main())
