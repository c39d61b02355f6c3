// The web demo page: UI only. Python and llama.cpp run in worker.js.
//
// body[data-state] is one of: starting, idle (no model), loading, ready, generating, broken.
// Two modes share the sampling settings: chat (a conversation kept here, rendered in the worker
// by the model's own chat template) and raw prompt (the text is completed as is).
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  progress: $("progress"), status: $("status"), error: $("error"), errorText: $("error-text"),
  modelForm: $("model-form"), modelFile: $("model-file"), load: $("load"),
  modelInfo: $("model-info"), demoName: $("demo-model-name"),
  genForm: $("generate-form"), prompt: $("prompt"), maxTokens: $("max-tokens"),
  temperature: $("temperature"), topK: $("top-k"), topP: $("top-p"), seed: $("seed"),
  repeatPenalty: $("repeat-penalty"),
  generate: $("generate"), stop: $("stop"), output: $("output"),
  rawMode: $("raw-mode"), chatMode: $("chat-mode"), chatUnavailable: $("chat-unavailable"),
  chatForm: $("chat-form"), system: $("system-prompt"), conversation: $("conversation"),
  conversationEmpty: $("conversation-empty"), chatInput: $("chat-input"),
  chatSend: $("chat-send"), chatStop: $("chat-stop"), chatClear: $("chat-clear"),
  chatPrompt: $("chat-prompt"),
  outputPrompt: $("output-prompt"), outputText: $("output-text"), stats: $("gen-stats"),
  loraFlag: $("lora-flag"), loraReason: $("lora-reason"), adapterInfo: $("adapter-info"),
  loraNote: $("lora-note"), loraForm: $("lora-form"), loraScale: $("lora-scale"),
  applyLora: $("apply-lora"), loraResult: $("lora-result"), backend: $("backend"),
};

let worker = null;
let config = null;
let modelLoaded = false;
let chunks = 0;
let chatAvailable = false;
const conversation = []; // {role, content}: the turns so far (the system prompt is not one)
let turn = null; // the chat turn being answered: {userText, userItem, replyItem, reply}
let sink = null; // where chunks go: {text: element, counter: element}

function setState(state) {
  document.body.dataset.state = state;
  const ready = state === "ready";
  const idle = ready || state === "idle";
  ui.load.disabled = !idle;
  ui.generate.disabled = !ready;
  ui.stop.disabled = state !== "generating";
  ui.chatSend.disabled = !(ready && chatAvailable);
  ui.chatStop.disabled = state !== "generating";
  ui.chatClear.disabled = !idle || conversation.length === 0;
  ui.applyLora.disabled = !idle;
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function showMode() {
  const chat = mode() === "chat";
  ui.chatMode.hidden = !chat;
  ui.rawMode.hidden = chat;
}

function setChatSupport(chat) {
  chatAvailable = chat.available;
  const radio = document.querySelector('input[name="mode"][value="chat"]');
  radio.disabled = !chat.available;
  if (chat.available) {
    ui.chatUnavailable.hidden = true;
    ui.chatUnavailable.textContent = "";
  } else {
    ui.chatUnavailable.textContent = `Chat mode is off for this model: ${chat.reason} ` +
      "The raw-prompt mode works.";
    ui.chatUnavailable.hidden = false;
    document.querySelector('input[name="mode"][value="raw"]').checked = true;
  }
  showMode();
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
    ["Chat template", info.chat.available
      ? `the model's own (tokenizer.chat_template, ${info.chat.template_chars.toLocaleString("en")} characters)`
      : `none usable: ${info.chat.reason}`],
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
  const threads = caps.threads ? `${caps.max_threads || "all"} threads` : "1 thread";
  ui.backend.textContent = `${caps.backend}, ${threads}` +
    `${caps.system_info ? ` (${caps.system_info.trim()})` : ""}`;
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
      clearConversation(); // the turns were another model's
      showModelInfo(msg.info);
      setChatSupport(msg.info.chat);
      setProgress(1, 1, `Model loaded: ${msg.info.name}.`);
      setState("ready");
      break;
    case "generating":
      if (msg.prompt !== undefined) ui.chatPrompt.textContent = msg.prompt;
      setState("generating");
      break;
    case "chunk":
      chunks += 1;
      if (turn) turn.reply += msg.text;
      if (sink) {
        sink.text.append(msg.text);
        sink.counter.dataset.updates = String(chunks);
        sink.scroller.scrollTop = sink.scroller.scrollHeight;
      }
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
      if (turn) finishTurn(r.reason);
      sink = null;
      setProgress(1, 1, r.reason === "cancelled" ? "Generation stopped." : "Generation done.");
      setState("ready");
      break;
    }
    case "lora":
      showLoraResult(msg);
      setState(modelLoaded ? "ready" : "idle");
      break;
    case "error":
      if (turn) abandonTurn();
      sink = null;
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

function samplingParams() {
  const params = {
    maxTokens: numberOr(ui.maxTokens, 128),
    temperature: numberOr(ui.temperature, 0.8),
    topK: numberOr(ui.topK, 40),
    topP: numberOr(ui.topP, 0.95),
    repeatPenalty: numberOr(ui.repeatPenalty, 1.1),
    seed: numberOr(ui.seed, null),
  };
  for (const [name, v] of Object.entries(params)) {
    if (v !== null && !Number.isFinite(v)) {
      showError(`Invalid setting: ${name} must be a number.`);
      return null;
    }
  }
  return params;
}

function startStats() {
  chunks = 0;
  ui.stats.textContent = "";
  delete ui.stats.dataset.reason;
  setProgress(null, 1, "Generating…");
  setState("generating");
}

ui.genForm.addEventListener("submit", (e) => {
  e.preventDefault();
  if (ui.generate.disabled) return;
  clearError();
  const params = samplingParams();
  if (!params) return;
  params.prompt = ui.prompt.value;
  ui.output.dataset.updates = "0";
  ui.outputPrompt.textContent = params.prompt;
  ui.outputText.replaceChildren();
  sink = { text: ui.outputText, counter: ui.output, scroller: ui.output };
  startStats();
  worker.postMessage({ type: "generate", params });
});

// ---- chat mode ----

function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = `msg ${role}`;
  li.dataset.role = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role === "user" ? "You" : "Assistant";
  const content = document.createElement("div");
  content.className = "content";
  content.textContent = text;
  li.append(who, content);
  ui.conversation.append(li);
  ui.conversationEmpty.hidden = true;
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
  return li;
}

function chatMessages() {
  const system = ui.system.value.trim();
  return [...(system ? [{ role: "system", content: system }] : []), ...conversation];
}

ui.chatForm.addEventListener("submit", (e) => {
  e.preventDefault();
  if (ui.chatSend.disabled) return;
  clearError();
  const text = ui.chatInput.value.trim();
  if (!text) {
    showError("Type a message first.");
    ui.chatInput.focus();
    return;
  }
  const params = samplingParams();
  if (!params) return;
  const messages = [...chatMessages(), { role: "user", content: text }];
  turn = { userText: ui.chatInput.value, userItem: addMessage("user", text), reply: "" };
  turn.replyItem = addMessage("assistant", "");
  turn.replyItem.dataset.updates = "0";
  conversation.push({ role: "user", content: text });
  ui.chatInput.value = "";
  sink = { text: turn.replyItem.querySelector(".content"), counter: turn.replyItem,
    scroller: ui.conversation };
  startStats();
  worker.postMessage({ type: "chat", messages, params });
});

function finishTurn(reason) {
  conversation.push({ role: "assistant", content: turn.reply });
  turn.replyItem.dataset.reason = reason;
  if (reason === "cancelled" || reason === "length" || reason === "context") {
    const flag = document.createElement("span");
    flag.className = "flag";
    flag.textContent = { cancelled: " (stopped)", length: " (max tokens reached)",
      context: " (context window full)" }[reason];
    turn.replyItem.append(flag);
  }
  turn = null;
}

function abandonTurn() {
  // the turn failed: the conversation is as before it, the message back in the box
  conversation.splice(conversation.length - 1, 1);
  turn.userItem.remove();
  turn.replyItem.remove();
  ui.chatInput.value = turn.userText;
  ui.conversationEmpty.hidden = conversation.length > 0;
  turn = null;
}

function clearConversation() {
  conversation.length = 0;
  ui.conversation.replaceChildren();
  ui.conversationEmpty.hidden = false;
  ui.chatPrompt.textContent = "";
  ui.stats.textContent = "";
  delete ui.stats.dataset.reason;
}

ui.chatClear.addEventListener("click", () => {
  if (ui.chatClear.disabled) return;
  clearConversation();
  clearError();
  setState(modelLoaded ? "ready" : "idle");
  ui.chatInput.focus();
});

for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener("change", showMode);
}

function stop() {
  if (ui.stop.disabled) return;
  worker.postMessage({ type: "stop" });
  ui.status.textContent = "Stopping…";
}

ui.stop.addEventListener("click", stop);
ui.chatStop.addEventListener("click", stop);
for (const [box, form] of [[ui.prompt, ui.genForm], [ui.chatInput, ui.chatForm]]) {
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}
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
  ui.system.value = config.system;
  ui.chatInput.value = config.question;
  const m = config.demoModel;
  ui.demoName.textContent = `(${m.name}, ${bytesText(m.size)}, ${m.licence}; from ` +
    `${m.source} on PyPI)`;
  showMode();
  startWorker();
}

main();
