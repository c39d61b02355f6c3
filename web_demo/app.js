// The web demo page: UI only. Python and llama.cpp run in worker.js.
//
// body[data-state] is one of: starting, idle (no model), loading, ready, generating, broken.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  progress: $("progress"), status: $("status"), error: $("error"), errorText: $("error-text"),
  modelForm: $("model-form"), modelFile: $("model-file"), load: $("load"),
  modelInfo: $("model-info"), demoName: $("demo-model-name"),
  genForm: $("generate-form"), prompt: $("prompt"), maxTokens: $("max-tokens"),
  temperature: $("temperature"), topK: $("top-k"), topP: $("top-p"), seed: $("seed"),
  generate: $("generate"), stop: $("stop"), output: $("output"),
  outputPrompt: $("output-prompt"), outputText: $("output-text"), stats: $("gen-stats"),
  loraFlag: $("lora-flag"), loraReason: $("lora-reason"), adapterInfo: $("adapter-info"),
  loraNote: $("lora-note"), loraForm: $("lora-form"), loraScale: $("lora-scale"),
  applyLora: $("apply-lora"), loraResult: $("lora-result"), backend: $("backend"),
};

let worker = null;
let config = null;
let modelLoaded = false;
let chunks = 0;

function setState(state) {
  document.body.dataset.state = state;
  const ready = state === "ready";
  const idle = ready || state === "idle";
  ui.load.disabled = !idle;
  ui.generate.disabled = !ready;
  ui.stop.disabled = state !== "generating";
  ui.applyLora.disabled = !idle;
}

function setProgress(step, total, text) {
  ui.progress.max = total;
  if (step === null) ui.progress.removeAttribute("value"); // indeterminate: work in progress
  else ui.progress.value = step;
  ui.status.textContent = text;
}

function pyFloat(x) {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

function showError(text) {
  ui.errorText.textContent = text;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  ui.errorText.textContent = "";
}

function pyRepr(value) {
  if (value === true) return "True";
  if (value === false) return "False";
  if (value === null || value === undefined) return "None";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  if (typeof value === "object") {
    const items = Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyRepr(v)}`);
    return `{${items.join(", ")}}`;
  }
  return String(value);
}

function bytesText(n) {
  const units = ["bytes", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return i === 0 ? `${n} bytes` : `${n.toFixed(1)} ${units[i]}`;
}

function showModelInfo(info) {
  const rows = [
    ["Model", info.name],
    ["Description", info.description],
    ["Parameters", info.n_params.toLocaleString("en")],
    ["Tensor data", info.size_text],
    ["Context", `${info.n_ctx} tokens (trained for ${info.n_ctx_train})`],
    ["Vocabulary", `${info.n_vocab} tokens`],
    ["Layers × width", `${info.n_layer} × ${info.n_embd}`],
    ...Object.entries(info.metadata),
    ["Loaded in", `${info.seconds} s`],
  ];
  ui.modelInfo.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dd.dataset.key = k;
    ui.modelInfo.append(dt, dd);
  }
  ui.modelInfo.hidden = false;
}

function showCapabilities(caps, adapter) {
  ui.backend.textContent = `${caps.backend}${caps.system_info ? ` (${caps.system_info.trim()})` : ""}`;
  ui.loraFlag.textContent = pyRepr(caps.lora);
  ui.loraFlag.dataset.value = String(caps.lora);
  ui.loraReason.textContent = caps.lora_reason === null ? "None" : caps.lora_reason;
  ui.loraNote.textContent = caps.lora
    ? "This backend applies adapters: set_lora() returns True."
    : "On this platform adapters are not applied. Code that checks " +
      "engine.capabilities.lora can skip them; code that calls set_lora() anyway keeps " +
      "running: it gets False and a LoraUnsupportedWarning, and engine.loras stays {}.";
  if (adapter) {
    ui.adapterInfo.textContent = `${config.demoAdapter.name} (rank ${adapter.rank}, alpha ` +
      `${adapter.alpha}, targets ${adapter.targets.join(", ")}; ${bytesText(config.demoAdapter.size)})`;
  } else {
    ui.adapterInfo.textContent = config.demoAdapter.name;
  }
}

function showLoraResult(msg) {
  const r = msg.result;
  const lines = [`>>> engine.set_lora(${JSON.stringify(msg.name)}, ${pyFloat(msg.scale)})`];
  for (const w of r.warnings) lines.push(`${w.category}: ${w.message}`);
  lines.push(pyRepr(r.applied));
  lines.push(">>> engine.loras", pyRepr(r.loras));
  ui.loraResult.textContent = lines.join("\n");
  ui.loraResult.dataset.applied = String(r.applied);
  ui.loraResult.hidden = false;
}

function numberOr(input, fallback) {
  const v = input.value.trim();
  return v === "" ? fallback : Number(v);
}

function onMessage(event) {
  const msg = event.data;
  switch (msg.type) {
    case "progress":
      setProgress(msg.step, msg.total, msg.text);
      break;
    case "ready":
      showCapabilities(msg.caps, msg.adapter);
      setProgress(1, 1, "Ready. Load a model to start.");
      setState("idle");
      ui.load.focus();
      break;
    case "loaded":
      modelLoaded = true;
      showModelInfo(msg.info);
      setProgress(1, 1, `Model loaded: ${msg.info.name}.`);
      setState("ready");
      break;
    case "generating":
      setState("generating");
      break;
    case "chunk":
      chunks += 1;
      ui.outputText.append(msg.text);
      ui.output.dataset.updates = String(chunks);
      ui.output.scrollTop = ui.output.scrollHeight;
      break;
    case "done": {
      const r = msg.result;
      const why = { stop: "the model ended its text", length: "max tokens reached",
        context: "the context window is full", cancelled: "stopped", error: "error" }[r.reason] || r.reason;
      const speed = r.tokens_per_second ? `, ${r.tokens_per_second} tokens/s` : "";
      ui.stats.textContent = `${r.tokens} tokens in ${r.seconds} s${speed}; seed ${r.seed}; ` +
        `finished: ${why}.`;
      ui.stats.dataset.reason = r.reason;
      ui.stats.dataset.tokens = String(r.tokens);
      setProgress(1, 1, r.reason === "cancelled" ? "Generation stopped." : "Generation done.");
      setState("ready");
      break;
    }
    case "lora":
      showLoraResult(msg);
      setState(modelLoaded ? "ready" : "idle");
      break;
    case "error":
      showError(msg.error);
      setProgress(1, 1, "Ready.");
      setState(modelLoaded ? "ready" : "idle");
      break;
    case "fatal":
      fatal(msg.error);
      break;
    default:
      console.warn("unknown message from the worker", msg);
  }
}

function fatal(text) {
  showError(`${text.replace(/\.?$/, ".")} Reload the page to start again.`);
  setProgress(0, 1, "The engine stopped.");
  setState("broken");
}

function startWorker() {
  worker = new Worker("worker.js", { type: "module" });
  worker.onmessage = onMessage;
  worker.onerror = (e) => fatal(`The engine crashed: ${e.message || "unknown error"}.`);
  worker.postMessage({ type: "init", config });
}

ui.modelForm.addEventListener("submit", (e) => {
  e.preventDefault();
  clearError();
  const source = ui.modelForm.elements.source.value;
  if (source === "file") {
    const file = ui.modelFile.files[0];
    if (!file) {
      showError("Choose a .gguf file first (or pick the demo model).");
      ui.modelFile.focus();
      return;
    }
    setState("loading");
    worker.postMessage({ type: "load-file", file });
  } else {
    setState("loading");
    worker.postMessage({ type: "load-demo" });
  }
});

ui.modelFile.addEventListener("change", () => {
  if (ui.modelFile.files.length) ui.modelForm.elements.source.value = "file";
});

ui.genForm.addEventListener("submit", (e) => {
  e.preventDefault();
  if (ui.generate.disabled) return;
  clearError();
  const params = {
    prompt: ui.prompt.value,
    maxTokens: numberOr(ui.maxTokens, 64),
    temperature: numberOr(ui.temperature, 0.8),
    topK: numberOr(ui.topK, 40),
    topP: numberOr(ui.topP, 0.95),
    seed: numberOr(ui.seed, null),
  };
  for (const [name, v] of Object.entries(params)) {
    if (name !== "prompt" && v !== null && !Number.isFinite(v)) {
      showError(`Invalid setting: ${name} must be a number.`);
      return;
    }
  }
  chunks = 0;
  ui.output.dataset.updates = "0";
  ui.outputPrompt.textContent = params.prompt;
  ui.outputText.replaceChildren();
  ui.stats.textContent = "";
  delete ui.stats.dataset.reason;
  setProgress(null, 1, "Generating…");
  setState("generating");
  worker.postMessage({ type: "generate", params });
});

function stop() {
  if (ui.stop.disabled) return;
  worker.postMessage({ type: "stop" });
  ui.status.textContent = "Stopping…";
}

ui.stop.addEventListener("click", stop);
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    ui.genForm.requestSubmit();
  }
});
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape") stop();
});

ui.loraForm.addEventListener("submit", (e) => {
  e.preventDefault();
  if (ui.applyLora.disabled) return;
  clearError();
  const scale = numberOr(ui.loraScale, 1.0);
  if (!Number.isFinite(scale)) {
    showError("Invalid setting: the adapter scale must be a number.");
    return;
  }
  worker.postMessage({ type: "set-lora", scale });
});

$("error-dismiss").addEventListener("click", clearError);

async function main() {
  setState("starting");
  try {
    const resp = await fetch("/demo/config.json");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    config = await resp.json();
  } catch (err) {
    fatal(`Could not read the demo's configuration (${err.message}).`);
    return;
  }
  ui.prompt.value = config.prompt;
  ui.demoName.textContent = `(${config.demoModel.name}, ${bytesText(config.demoModel.size)}, ` +
    "made by llamart)";
  startWorker();
}

main();
