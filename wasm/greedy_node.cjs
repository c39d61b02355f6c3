// Greedy generation with the llamart WebAssembly module in plain Node (no Pyodide), printing
// JSON: {prompt_tokens, logits (next-token, after the prompt), generated, system_info}.
// Used by tests/test_wasm_parity.py to compare against the native build.
//
//   node wasm/greedy_node.cjs WASM_DIR MODEL.gguf PROMPT N_TOKENS [N_CTX]
//
// LLAMART_WASM_NAME picks another module in WASM_DIR (llamart_wasm_relaxed: its .js and .wasm);
// LLAMART_WASM_MAT_VEC is passed on to the module's environment.
"use strict";
const fs = require("fs");
const path = require("path");
const glue = require("./llamart_pyodide.js");

async function main() {
  const [wasmDir, model, prompt, nTokens, nCtx] = process.argv.slice(2);
  if (!model || nTokens === undefined) {
    throw new Error("usage: node greedy_node.cjs WASM_DIR MODEL.gguf PROMPT N_TOKENS [N_CTX]");
  }
  const name = process.env.LLAMART_WASM_NAME || "llamart_wasm";
  const M = await glue.instantiate({
    glue: path.resolve(wasmDir, `${name}.js`),
    wasm: path.resolve(wasmDir, `${name}.wasm`),
    print: (s) => process.stderr.write(s + "\n"),
    printErr: (s) => process.stderr.write(s + "\n"),
    // LLAMART_WASM_MAT_VEC=0: ggml's one-row matrix-vector calls (wasm/mat_vec/)
    env: process.env.LLAMART_WASM_MAT_VEC === undefined ? undefined
      : {LLAMART_WASM_MAT_VEC: process.env.LLAMART_WASM_MAT_VEC},
  });
  const modelPath = path.resolve(model);
  if (!fs.existsSync(modelPath)) throw new Error(`${modelPath}: no such file`);
  glue.mountHost(M, null, path.dirname(modelPath));

  const cstr = (s) => {
    const n = M.lengthBytesUTF8(s) + 1;
    const p = M._lm_malloc(n);
    M.stringToUTF8(s, p, n);
    return p;
  };
  const fail = (what) => {
    throw new Error(`${what}: ${M.UTF8ToString(M._lm_last_error())}`);
  };

  const p = cstr(modelPath);
  const m = M._lm_session_load(p, Number(nCtx || 256), 64, 1, 0, 0);
  M._lm_free(p);
  if (!m) fail(`loading ${modelPath}`);
  const nVocab = M._lm_n_vocab(m);

  const text = cstr(prompt);
  const maxTok = M.lengthBytesUTF8(prompt) + 8;
  const toks = M._lm_malloc(4 * maxTok);
  const n = M._lm_tokenize(m, text, M.lengthBytesUTF8(prompt), toks, maxTok, 1, 0);
  if (n < 0 || n > maxTok) fail("tokenize");  // n > maxTok: more tokens than bytes + 8
  const promptTokens = Array.from(M.HEAP32.subarray(toks >> 2, (toks >> 2) + n));
  if (M._lm_eval(m, toks, n) !== 0) fail("eval");
  const lp = M._lm_logits(m);
  const logits = Array.from(M.HEAPF32.subarray(lp >> 2, (lp >> 2) + nVocab));

  // greedy: temperature 0, other stages off; int64 seed passed as (low, high) int32s
  if (M._lm_sampler_init(m, 0, 0, 1, 0, 1, 64, 0, 0) !== 0) fail("sampler_init");
  if (M._lm_sampler_accept(m, toks, n) !== 0) fail("sampler_accept");
  const status = M._lm_malloc(4);
  const out = M._lm_malloc(4 * Number(nTokens));
  const got = M._lm_generate(m, Number(nTokens), 1, out, status, 0);
  if (got < 0) fail("generate");
  const generated = Array.from(M.HEAP32.subarray(out >> 2, (out >> 2) + got));
  M._lm_session_free(m);
  process.stdout.write(JSON.stringify({
    prompt_tokens: promptTokens,
    logits,
    generated,
    system_info: M.UTF8ToString(M._lm_system_info()),
  }));
}

main().catch((err) => {
  process.stderr.write(`greedy_node: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
