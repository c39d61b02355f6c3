"""Runs inside Pyodide (Node or Chromium): one llamart WebAssembly measurement.

The JS runner sets the global ``JOB`` (JSON text: bench.llamart_job arguments plus ``repo``,
the folder holding the llamart and bench packages). The last expression is the result as JSON.
"""

from __future__ import annotations

import json
import sys

_job = json.loads(JOB)  # noqa: F821 (set by the JS runner)
sys.path.insert(0, _job["repo"])

import llamart_wasm  # noqa: E402  (the emscripten module, registered by the runner)

from bench import llamart_job  # noqa: E402

_result = getattr(llamart_job, _job["kind"])(_job)
_result["wasm_heap_mb"] = llamart_wasm.HEAP8.length / 1e6
json.dumps(_result)
