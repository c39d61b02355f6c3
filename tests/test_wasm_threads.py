"""Threads: the build the glue picks at run time, ``n_threads`` honoured and capped, results
the same at any thread count, C++ exceptions caught in the pthreads module.

In Pyodide the runner says which module the glue had to pick (``LLAMART_EXPECT_WASM_BUILD``:
"threads" in Node and in a cross-origin isolated page, "single" in a page served without
COOP/COEP); the module tells which it is (``llamartBuild``, set by wasm/llamart_pyodide.js).
The choice itself is also checked natively, in plain Node, with and without SharedArrayBuffer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llamart import Engine, GrammarError
from llamart.engine import default_threads

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO / "wasm" / "llamart_pyodide.js"
IN_PYODIDE = sys.platform == "emscripten"
GREEDY = {"temperature": 0.0}


def _module_build() -> str:
    import llamart_wasm  # type: ignore[import-not-found]

    return str(llamart_wasm.llamartBuild)


def _cores() -> int:
    """The host's cores, as the runner saw them natively (Node's os.cpus() and Chromium's
    navigator.hardwareConcurrency report the same on this host)."""
    cores = os.environ.get("LLAMART_HOST_CORES")
    if not cores:
        pytest.skip("the runner did not pass the host's cores (LLAMART_HOST_CORES)")
    return int(cores)


@pytest.mark.skipif(not IN_PYODIDE, reason="the module choice is made in Pyodide's runtime")
def test_the_module_the_runtime_allows_was_loaded(record_property):
    expected = os.environ.get("LLAMART_EXPECT_WASM_BUILD")
    if not expected:
        pytest.skip("the runner did not say which build to expect (LLAMART_EXPECT_WASM_BUILD)")
    build = _module_build()
    assert build == expected
    caps = Engine().capabilities
    assert caps.threads == (build == "threads")
    assert caps.max_threads == (_cores() if build == "threads" else 1)
    record_property("behaviour", f"{build} module; max_threads {caps.max_threads}")


@pytest.mark.skipif(IN_PYODIDE, reason="native: no cap")
def test_native_threads_are_not_capped(fx):
    with Engine() as engine:
        assert engine.capabilities.threads and engine.capabilities.max_threads is None
        n = (os.cpu_count() or 1) + 2  # more than the cores: llama.cpp's choice to allow it
        assert engine.load_model(fx["model_f32"], n_ctx=64, n_threads=n).n_threads == n
        assert engine.load_model(fx["model_f32"], n_ctx=64, n_threads=1).n_threads == 1


def test_n_threads_is_honoured_and_capped(fx, record_property):
    with Engine() as engine:
        caps = engine.capabilities
        cap = caps.max_threads
        for asked in (1, 2, 64):
            info = engine.load_model(fx["model_f32"], n_ctx=64, n_threads=asked)
            want = asked if cap is None else min(asked, cap)
            assert info.n_threads == (want if caps.threads else 1), asked
        default = engine.load_model(fx["model_f32"], n_ctx=64).n_threads
        assert default == (cap if cap is not None else default_threads())
        record_property("behaviour", f"n_threads 64 -> {info.n_threads}; default {default}")


def test_greedy_tokens_are_the_same_at_any_thread_count(fx):
    """ggml splits rows between threads, each row computed by one: the same numbers."""
    runs = []
    with Engine() as engine:
        most = engine.capabilities.max_threads or 2
        for n in sorted({1, min(2, most), most}):
            engine.load_model(fx["model_f32"], n_ctx=128, n_threads=n)
            text = engine.complete("Once upon a time", max_tokens=16, **GREEDY)
            logits = list(engine.logits("Once upon a time"))
            runs.append((n, engine.model_info.n_threads, text, logits))
    base = runs[0]
    for n, used, text, logits in runs[1:]:
        assert text == base[2], (n, used)
        worst = max(abs(a - b) for a, b in zip(logits, base[3], strict=True))
        assert worst <= 1e-4 * max(abs(v) for v in base[3]), (n, used, worst)


def test_cpp_exceptions_are_caught_at_every_thread_count(fx):
    """llama.cpp's JSON-schema converter throws inside the core: with -pthread this needed the
    module's own copy of libunwind's landing-pad context (wasm/CMakeLists.txt)."""
    with Engine() as engine:
        engine.load_model(fx["model_f32"], n_ctx=64, n_threads=engine.capabilities.max_threads)
        for _ in range(3):
            with pytest.raises(GrammarError, match=re.escape("unrecognized type decimal")):
                engine.json_schema_to_grammar({"type": "decimal"})
        assert engine.complete("hello", 4, grammar='root ::= "yes" | "no"', **GREEDY) in (
            "yes", "no")


# ---- the glue's choice, in plain Node (native run only)

_CHOOSE = """
const glue = require(%(glue)s);
const opts = {glue: "s.js", wasm: "s.wasm", threaded: {glue: "t.js", wasm: "t.wasm"}};
const out = {};
const pick = (o) => {
  try { return glue.chooseBuild(o).glue; } catch (e) { return "error: " + e.message; }
};
out.auto = pick(opts);
out.off = pick({...opts, threads: false});
out.no_threaded = pick({glue: "s.js", wasm: "s.wasm"});
delete globalThis.SharedArrayBuffer;
out.auto_without_sab = pick(opts);
out.on_without_sab = pick({...opts, threads: true});
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(IN_PYODIDE or shutil.which("node") is None, reason="plain Node, natively")
def test_the_glue_picks_the_threaded_build_only_where_it_can_run():
    script = _CHOOSE % {"glue": json.dumps(str(GLUE))}
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["auto"] == "t.js" and got["off"] == "s.js" and got["no_threaded"] == "s.js"
    assert got["auto_without_sab"] == "s.js"
    assert got["on_without_sab"].startswith("error: ")
    assert "SharedArrayBuffer is not defined" in got["on_without_sab"]
