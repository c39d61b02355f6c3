// Module worker for `python -m bench` in Chromium: loads Pyodide and the llamart WebAssembly
// module, unpacks the llamart and bench Python packages, mounts the model as a Blob (WORKERFS,
// no copy), runs bench/wasm_entry.py and posts the JSON result back to the local server.
import { loadPyodide } from "/node_modules/pyodide/pyodide.mjs";

function post(route, body) {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/__bench__/" + route, false);
  xhr.send(body);
}

async function main() {
  const config = await (await fetch("/__bench__/config.json")).json();
  (0, eval)(await (await fetch(config.glueUrl)).text()); // defines LlamartPyodide
  const pyodide = await loadPyodide({ indexURL: "/node_modules/pyodide/" });
  pyodide.setStdout({ batched: (s) => post("log", s) });
  pyodide.setStderr({ batched: (s) => post("log", s) });
  const module = await LlamartPyodide.load(pyodide, {
    glue: config.wasm.glue,
    wasm: config.wasm.wasm,
    threaded: config.wasm.threaded,
    threads: config.wasm.threads,
    print: (s) => post("log", s),
    printErr: (s) => post("log", s),
  });
  const tree = await (await fetch("/__bench__/tree.zip")).arrayBuffer();
  pyodide.unpackArchive(tree, "zip", { extractDir: config.repo });
  const blob = await (await fetch(config.modelUrl)).blob();
  const [model] = LlamartPyodide.mountBlobs(module, pyodide, "/models",
                                            [{ name: config.modelName, data: blob }]);
  pyodide.globals.set("JOB", JSON.stringify({ ...config.job, model, repo: config.repo }));
  const entry = await (await fetch(config.entryUrl)).text();
  return await pyodide.runPythonAsync(entry);
}

main().then(
  (out) => post("result", out),
  (err) => post("error", String(err && err.stack ? err.stack : err)),
);
