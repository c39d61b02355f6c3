"""Developer tooling, run from a checkout (never part of the installed package).

``python -m tools.pyodide_runner`` (pytest in Pyodide), ``python -m tools.soak`` (memory soak),
``python -m tools.fuzz_gguf`` (GGUF fuzzer; harness in fuzz.py), ``tools/bench_validate.py``,
``python -m tools.train_lora`` (the demo LoRA trainer, on JAX: tools/train_lora/requirements.txt),
and what they share: isolated_http.py (the one HTTP server with COOP/COEP headers and
WebAssembly MIME types) and browser.py (headless Chromium).
"""
