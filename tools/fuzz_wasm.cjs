// Fuzz worker for the llamart WebAssembly module in plain Node (no Pyodide): loads GGUF files
// one after the other through the C API (lm_session_load, as the wasm backend does; adapters via
// lm_adapter_load, which this build refuses: it has no LoRA, see lm_capabilities) in one
// process, and tells a clean refusal from a crash.
//
//   node tools/fuzz_wasm.cjs WASM_DIR BASE_MODEL.gguf  < cases   (lines "id\tkind\tpath")
//
// Driven by tools/fuzz.py (run_cases(..., backend="wasm"), which validates each file
// in Python first, as the Engine does) and python -m tools.fuzz_gguf --backend wasm.  Prints one JSON
// line {"start": id} before each case and one result line after it:
//   {"id", "outcome": "loaded" | "rejected" | "crash", "detail", "seconds", "restarts"}
// "crash" = the module trapped, aborted or threw out of C++ (a WebAssembly RuntimeError,
// Aborted(...), or an uncaught exception): its state is then unusable, so the module is
// instantiated afresh before the next case.  A hang is seen by the parent (no result line
// within its timeout), which kills this process and starts another with the remaining cases.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const glue = require(path.join(__dirname, "..", "wasm", "llamart_pyodide.js"));

const N_CTX = 64;
const N_BATCH = 64;
const PROMPT = "hello world";

let M = null; // the emscripten module
let mounted = new Set(); // host folders mounted in M's file system
let base = 0; // lm_session* of the base model (adapter cases)
let restarts = 0;
let logTail = ""; // the module's stdout/stderr since the case started

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function capture(s) {
  logTail = (logTail + s + "\n").slice(-2000);
}

async function start(wasmDir) {
  // emscripten's Node glue adds process handlers that keep its instance (and its memory)
  // alive: drop the previous instance's before making a new one
  process.removeAllListeners("uncaughtException");
  process.removeAllListeners("unhandledRejection");
  M = null;
  M = await glue.instantiate({
    glue: path.resolve(wasmDir, "llamart_wasm.js"),
    wasm: path.resolve(wasmDir, "llamart_wasm.wasm"),
    print: capture,
    printErr: capture,
  });
  M._lm_log_set_level(3); // errors only: the reason of a refusal is in lm_last_error
  mounted = new Set();
  base = 0;
}

function mount(file) {
  const dir = path.dirname(path.resolve(file));
  if (!mounted.has(dir)) {
    glue.mountHost(M, null, dir);
    mounted.add(dir);
  }
  return path.resolve(file);
}

function cstr(s) {
  const n = M.lengthBytesUTF8(s) + 1;
  const p = M._lm_malloc(n);
  M.stringToUTF8(s, p, n);
  return p;
}

function lastError() {
  M._lm_log_take(); // drain the log buffer so it cannot grow
  return M.UTF8ToString(M._lm_last_error()).trim().split("\n").slice(-2).join(" | ");
}

/** Tokenize, evaluate the prompt, read the logits, sample two tokens greedily. */
function exercise(m) {
  const text = cstr(PROMPT);
  const max = 64;
  const toks = M._lm_malloc(4 * max);
  const status = M._lm_malloc(4);
  try {
    const n = M._lm_tokenize(m, text, M.lengthBytesUTF8(PROMPT), toks, max, 1, 0);
    if (n <= 0 || n > max) return `tokenize returned ${n}: ${lastError()}`;
    const rc = M._lm_eval(m, toks, n);
    if (rc !== 0) return `eval returned ${rc}: ${lastError()}`;
    const lp = M._lm_logits(m) >>> 0;
    const nVocab = M._lm_n_vocab(m);
    if (!lp) return "no logits";
    const logits = M.HEAPF32.subarray(lp >> 2, (lp >> 2) + nVocab);
    let finite = 0;
    for (let i = 0; i < logits.length; i++) if (Number.isFinite(logits[i])) finite++;
    if (M._lm_sampler_init(m, 0, 0, 1, 0, 1, 64, 0, 0) !== 0) return `sampler: ${lastError()}`;
    if (M._lm_sampler_accept(m, toks, n) !== 0) return `sampler_accept: ${lastError()}`;
    const got = M._lm_generate(m, 2, 1, toks, status, 0);  // two greedy tokens, evaluated
    if (got < 0) return `generate returned ${got}: ${lastError()}`;
    const st = M.HEAP32[status >> 2];
    if (st < 0) return `generate ended with status ${st}: ${lastError()}`;
    return finite === nVocab ? null : `${nVocab - finite} of ${nVocab} logits not finite`;
  } finally {
    M._lm_free(text);
    M._lm_free(toks);
    M._lm_free(status);
  }
}

function loadModel(file) {
  const p = cstr(mount(file));
  try {
    return M._lm_session_load(p, N_CTX, N_BATCH, 1, 0, 0) >>> 0;
  } finally {
    M._lm_free(p);
  }
}

function runModel(file) {
  const m = loadModel(file);
  if (!m) return { outcome: "rejected", detail: `load: ${lastError()}` };
  try {
    const note = exercise(m);
    return { outcome: note ? "rejected" : "loaded", detail: note || "" };
  } finally {
    M._lm_session_free(m);
  }
}

function runAdapter(file, baseModel) {
  if (!base) {
    base = loadModel(baseModel);
    if (!base) throw new Error(`base model ${baseModel} did not load: ${lastError()}`);
  }
  const p = cstr(mount(file));
  let a;
  try {
    a = M._lm_adapter_load(base, p) >>> 0;
  } finally {
    M._lm_free(p);
  }
  if (!a) return { outcome: "rejected", detail: `adapter: ${lastError()}` };
  const arr = M._lm_malloc(4);
  const scale = M._lm_malloc(4);
  try {
    M.HEAPU32[arr >> 2] = a;
    M.HEAPF32[scale >> 2] = 1.0;
    const rc = M._lm_adapters_apply(base, arr, scale, 1);
    if (rc !== 0) return { outcome: "rejected", detail: `apply returned ${rc}: ${lastError()}` };
    M._lm_reset(base);
    const note = exercise(base);
    M._lm_adapters_apply(base, 0, 0, 0);
    return { outcome: note ? "rejected" : "loaded", detail: note || "" };
  } finally {
    M._lm_free(arr);
    M._lm_free(scale);
    M._lm_adapter_free(base, a);
    M._lm_reset(base);
  }
}

async function main() {
  const [wasmDir, baseModel] = process.argv.slice(2);
  if (!wasmDir || !baseModel) {
    throw new Error("usage: node tools/fuzz_wasm.cjs WASM_DIR BASE_MODEL.gguf < cases");
  }
  if (!fs.existsSync(path.resolve(wasmDir, "llamart_wasm.wasm"))) {
    throw new Error(`${wasmDir}: no llamart_wasm.wasm (build it: python -m wasm.build)`);
  }
  await start(wasmDir);
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    const [id, kind, file] = line.split("\t");
    write({ start: Number(id) });
    logTail = "";
    const t0 = process.hrtime.bigint();
    let res;
    try {
      res = kind === "adapter" ? runAdapter(file, baseModel) : runModel(file);
    } catch (err) {
      const what = err && err.name ? `${err.name}: ${err.message}` : `thrown ${String(err)}`;
      res = { outcome: "crash", detail: `${what} | ${logTail.trim().split("\n").slice(-2).join(" | ")}` };
      restarts++;
      await start(wasmDir); // the old instance may be mid-abort: never reuse it
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    write({ id: Number(id), outcome: res.outcome, detail: res.detail.slice(0, 400),
            seconds: Math.round(seconds * 1e4) / 1e4, restarts });
  }
}

main().catch((err) => {
  process.stderr.write(`fuzz_wasm: ${err && err.stack ? err.stack : err}\n`);
  process.exit(2);
});
