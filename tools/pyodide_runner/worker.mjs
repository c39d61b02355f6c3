// Dedicated module worker for `python -m tools.pyodide_runner --runtime chromium`: loads Pyodide and the
// llamart WebAssembly module, unpacks the test tree at its host paths, runs pytest and posts
// output (synchronously, so it streams in order), the junit xml and the exit code back.
import { loadPyodide } from "/node_modules/pyodide/pyodide.mjs";


function post(route, body) {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/__llamart__/" + route, false); // sync: ordered, live while pytest runs
  xhr.send(body);
}

const writer = (route) => ({
  write(buf) {
    post(route, buf.slice());
    return buf.length;
  },
});

async function main() {
  const config = await (await fetch("/__llamart__/config.json")).json();
  // the glue is a classic script: evaluate it globally (module workers have no importScripts)
  (0, eval)(await (await fetch("/wasm/llamart_pyodide.js")).text());
  const pyodide = await loadPyodide({ indexURL: config.pyodideUrl });
  pyodide.setStdout(writer("out"));
  pyodide.setStderr(writer("err"));
  const tree = await (await fetch("/__llamart__/tree.zip")).arrayBuffer();
  pyodide.unpackArchive(tree, "zip", { extractDir: "/" });
  let module = null;
  if (config.wasm) {
    module = await LlamartPyodide.load(pyodide, {
      glue: config.wasm.glue,
      wasm: config.wasm.wasm,
      threaded: config.wasm.threaded,
      threads: config.threads,
      print: (s) => post("out", s + "\n"),
      printErr: (s) => post("err", s + "\n"),
    });
  }
  // real models (Blobs, read on demand, no copy) and vocabulary files (copies in memory: fast
  // small reads) at their host folders, in both file systems
  for (const [dir, { mount, files }] of Object.entries(config.blobs || {})) {
    if (mount) {
      const blobs = [];
      for (const f of files) blobs.push({ name: f.name, data: await (await fetch(f.url)).blob() });
      LlamartPyodide.mountBlobs(module || {}, pyodide, dir, blobs);
      continue;
    }
    for (const FS of [module && module.FS, pyodide.FS]) if (FS) LlamartPyodide.mkdirTree(FS, dir);
    for (const f of files) {
      const data = new Uint8Array(await (await fetch(f.url)).arrayBuffer());
      for (const FS of [module && module.FS, pyodide.FS]) if (FS) FS.writeFile(dir + "/" + f.name, data);
    }
  }
  const bootstrap = await (await fetch("/tools/pyodide_runner/bootstrap.py")).text();
  pyodide.globals.set("CONFIG", JSON.stringify(config));
  const code = await pyodide.runPythonAsync(bootstrap, { filename: "bootstrap.py" });
  if (pyodide.FS.analyzePath(config.junit).exists) post("junit", pyodide.FS.readFile(config.junit));
  return code;
}

main().then(
  (code) => {
    post("done", JSON.stringify({ code }));
    self.postMessage(code);
  },
  (err) => {
    post("err", `pyodide_runner worker: ${err && err.stack ? err.stack : err}\n`);
    post("done", JSON.stringify({ code: 3 }));
  },
);
