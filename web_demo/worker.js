// The web demo's module worker: Pyodide + llamart (llama.cpp in WebAssembly) off the page's thread.
//
// Messages in (from app.js): {type: "init", config}, {type: "load-demo"},
// {type: "load-file", file}, {type: "generate", params}, {type: "chat", messages, params},
// {type: "stop"}, {type: "set-lora", scale}.  Messages out: {type: "progress" | "ready" |
// "loaded" | "generating" | "chunk" | "done" | "lora" | "error" | "fatal", ...}; "generating"
// carries the chat prompt the model's template made (chat mode).
//
// Python runs demo_session.py; every call returns JSON ({ok, ...} or {ok: false, error}).
// A generation is pulled one chunk at a time; every ~20 ms the loop yields to the event loop,
// so a "stop" message is seen between two tokens.
"use strict";

let config = null;
let pyCall = null; // demo_session.call
let generating = false;
let stopRequested = false;
let adapterPath = null;
let busy = Promise.resolve(); // serialises commands other than "stop"

const post = (type, data = {}) => self.postMessage({ type, ...data });
const progress = (step, total, text) => post("progress", { step, total, text });
const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

function py(name, args = [], blob = undefined) {
  return JSON.parse(pyCall(name, JSON.stringify(args), blob));
}

async function fetchOk(url) {
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} ${resp.statusText}`);
  return resp;
}

async function init(cfg) {
  config = cfg;
  const total = 5;
  progress(1, total, "Loading Python (Pyodide)…");
  const { loadPyodide } = await import(cfg.pyodideIndex + "pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL: cfg.pyodideIndex });
  await pyodide.loadPackage(new URL(cfg.micropip, self.location.href).href, {
    messageCallback: (m) => console.log(`[pyodide] ${m}`),
    errorCallback: (m) => console.warn(`[pyodide] ${m}`),
  });

  progress(2, total, `Installing llamart ${cfg.llamartVersion}…`);
  // llamart's Pyodide wheel (the package and its WebAssembly modules) with jinja2 + markupsafe
  // (the models' chat templates), from this server, installed as any page would
  const wheels = [...cfg.pyodideWheels, cfg.wheel].map((u) => new URL(u, self.location.href).href);
  pyodide.globals.set("DEMO_WHEELS", pyodide.toPy(wheels));
  await pyodide.runPythonAsync("import micropip\nawait micropip.install(list(DEMO_WHEELS), deps=False)");

  progress(3, total, "Loading llama.cpp (WebAssembly)…");
  // the wheel loads the module itself; awaited here so that the pthreads module's pool can
  // start (this page is served cross-origin isolated) before Python runs synchronously
  await pyodide.runPythonAsync("import llamart.web\nawait llamart.web.load_wasm()");

  progress(4, total, "Starting the engine…");
  const source = await (await fetchOk(cfg.session)).text();
  pyodide.FS.mkdirTree("/home/pyodide/demo");
  pyodide.FS.writeFile("/home/pyodide/demo/demo_session.py", source);
  pyodide.runPython("import sys; sys.path.insert(0, '/home/pyodide/demo')");
  pyCall = pyodide.pyimport("demo_session").call;
  const caps = py("init");
  if (!caps.ok) throw new Error(caps.error);

  progress(5, total, "Reading the demo adapter…");
  const adapter = await (await fetchOk(cfg.demoAdapter.url)).blob();
  const mounted = py("mount", [cfg.demoAdapter.name], adapter);
  if (!mounted.ok) throw new Error(mounted.error);
  adapterPath = mounted.path;
  const adapterInfo = py("adapter_info", [adapterPath]);
  post("ready", { caps, adapter: adapterInfo.ok ? adapterInfo : null });
}

async function loadModel(blob, name, size) {
  const mounted = py("mount", [name], blob);
  if (!mounted.ok) return post("error", { where: "model", error: mounted.error });
  const info = py("load", [mounted.path, config.demoModel.nCtx, size]);
  if (!info.ok) return post("error", { where: "model", error: info.error });
  post("loaded", { info });
}

async function loadDemo() {
  post("progress", { step: null, total: 1, text: `Fetching ${config.demoModel.name} from this server…` });
  const blob = await (await fetchOk(config.demoModel.url)).blob();
  post("progress", { step: null, total: 1, text: `Loading ${config.demoModel.name}…` });
  await nextTask();
  await loadModel(blob, config.demoModel.name, blob.size);
}

async function loadFile(file) {
  post("progress", { step: null, total: 1, text: `Loading ${file.name} (${(file.size / 1e6).toFixed(1)} MB)…` });
  await nextTask();
  // The File is mounted (WORKERFS: read on demand), not copied into memory first.
  await loadModel(file, file.name, file.size);
}

const sampling = (p) => [p.maxTokens, p.temperature, p.topK, p.topP, p.seed, p.repeatPenalty];

async function generate(p) {
  const started = py("start", [p.prompt, ...sampling(p)]);
  if (!started.ok) return post("error", { where: "generate", error: started.error });
  return stream({});
}

async function chat(messages, p) {
  const started = py("start_chat", [messages, ...sampling(p)]);
  if (!started.ok) return post("error", { where: "chat", error: started.error });
  return stream({ prompt: started.prompt });
}

// Pull the started generation chunk by chunk, posting each; a "stop" is seen between two.
async function stream(info) {
  generating = true;
  stopRequested = false;
  post("generating", info);
  let last = performance.now();
  let result;
  try {
    for (;;) {
      if (stopRequested) {
        result = py("stop");
        break;
      }
      result = py("next");
      if (!result.ok || result.done) break;
      post("chunk", { text: result.text });
      if (performance.now() - last > 20) {
        await nextTask(); // lets a "stop" message in
        last = performance.now();
      }
    }
  } finally {
    generating = false;
  }
  if (!result.ok) return post("error", { where: "generate", error: result.error });
  post("done", { result });
}

function setLora(scale) {
  const result = py("set_lora", [adapterPath, scale]);
  if (!result.ok) return post("error", { where: "lora", error: result.error });
  post("lora", { result, name: config.demoAdapter.name, scale });
}

async function handle(msg) {
  switch (msg.type) {
    case "init":
      return init(msg.config);
    case "load-demo":
      return loadDemo();
    case "load-file":
      return loadFile(msg.file);
    case "generate":
      return generate(msg.params);
    case "chat":
      return chat(msg.messages, msg.params);
    case "set-lora":
      return setLora(msg.scale);
    default:
      throw new Error(`unknown message ${msg.type}`);
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === "stop") {
    if (generating) stopRequested = true;
    return;
  }
  busy = busy.then(() => handle(msg)).catch((err) => {
    const text = err && err.message ? err.message : String(err);
    if (msg.type === "init" || !pyCall) {
      post("fatal", { error: `The engine could not start: ${text}` });
    } else {
      post("error", { where: msg.type, error: `Something went wrong: ${text}` });
    }
    console.error(err);
  });
};
