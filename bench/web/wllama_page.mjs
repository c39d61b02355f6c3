// `python -m bench` in Chromium: wllama (npm @wllama/wllama, served from node_modules) on one
// model at one thread count, timed like bench/llamart_job.py's `speed`. The page's own thread
// drives wllama, which runs llama.cpp in the worker it starts itself. Results go back to the
// local server (bench/wllama.py) as JSON.
import { Wllama } from "/node_modules/@wllama/wllama/esm/index.js";

function post(route, body) {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/__bench__/" + route, false);
  xhr.send(body);
}

const log = (...args) => post("log", args.map(String).join(" "));
const logger = { debug: () => {}, log, warn: log, error: log };

// Greedy, one candidate: temperature 0 with top_k 1, no penalties; the KV cache starts empty
// every time (cache_prompt false, one slot). Prompts are text (wllama 3.13.0's completion route
// rejects token ids): bench/wllama_prompt.py made them tokenize to the ids llamart gets.
const GREEDY = { temperature: 0, top_k: 1, top_p: 1, min_p: 0, repeat_penalty: 1,
                 penalty_repeat: 1, cache_prompt: false, stream: false };

async function complete(wllama, prompt, nPredict, ignoreEos) {
  const started = performance.now();
  const res = await wllama.createCompletion({ ...GREEDY, prompt, n_predict: nPredict,
                                              max_tokens: nPredict, ignore_eos: ignoreEos });
  const seconds = (performance.now() - started) / 1000;
  return { seconds, timings: res.timings || null, usage: res.usage || null,
           text: res.choices && res.choices[0] ? res.choices[0].text : null };
}

async function main() {
  const config = await (await fetch("/__bench__/config.json")).json();
  const blob = await (await fetch(config.modelUrl)).blob();
  const wllama = new Wllama({ default: config.wasmUrl }, { logger });
  const loadStarted = performance.now();
  await wllama.loadModel([blob], {
    n_threads: config.nThreads, n_ctx: config.nCtx, n_batch: config.nBatch,
    n_ubatch: config.nBatch, n_gpu_layers: 0, n_parallel: 1, seed: 1234,
  });
  const loadS = (performance.now() - loadStarted) / 1000;
  const out = {
    load_s: loadS, pp_s: [], tg_s: [], tg_tokens: [], pp_server: [], tg_server: [],
    runtime: {
      crossOriginIsolated: self.crossOriginIsolated,
      jspi: typeof WebAssembly.Suspending === "function",
      multithread: wllama.isMultithread(), n_threads: wllama.getNumThreads(),
      hardwareConcurrency: navigator.hardwareConcurrency,
      libllama: Wllama.getLibllamaVersion(), userAgent: navigator.userAgent,
    },
  };
  const prompt = config.promptText;
  const bos = config.tgText;
  // as llama-bench: the pp test (a warm-up, then reps), then the tg test (a warm-up, then reps)
  await complete(wllama, prompt, 1, true);
  for (let i = 0; i < config.reps; i++) {
    const r = await complete(wllama, prompt, 1, true);
    out.pp_s.push(r.seconds);
    out.pp_server.push(r.timings);
  }
  await complete(wllama, bos, 1, true);
  for (let i = 0; i < config.reps; i++) {
    const r = await complete(wllama, bos, config.nGen, true);
    out.tg_s.push(r.seconds);
    out.tg_tokens.push(r.usage ? r.usage.completion_tokens : r.timings.predicted_n);
    out.tg_server.push(r.timings);
    out.tg_text = r.text;
  }
  await wllama.exit();
  return JSON.stringify(out);
}

main().then(
  (out) => post("result", out),
  (err) => post("error", String(err && err.stack ? err.stack : err)),
);
