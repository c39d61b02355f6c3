// Dedicated module worker for `python -m tools.pyodide_runner --runtime chromium`: loads Pyodide,
// unpacks the test tree at its host paths, runs pytest (bootstrap.py installs llamart's wheel
// with micropip; the wheel loads the WebAssembly module itself) and posts output
// (synchronously, so it streams in order), the junit xml and the exit code back.
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
  // mkdirTree / mountBlobs from the glue (a classic script: evaluated globally)
  (0, eval)(await (await fetch("/wasm/llamart_pyodide.js")).text());
  const pyodide = await loadPyodide({ indexURL: config.pyodideUrl });
  pyodide.setStdout(writer("out"));
  pyodide.setStderr(writer("err"));
  const tree = await (await fetch("/__llamart__/tree.zip")).arrayBuffer();
  pyodide.unpackArchive(tree, "zip", { extractDir: "/" });
  // real models (Blobs, read on demand, no copy) and vocabulary files (copies in memory: fast
  // small reads) at their host folders in Pyodide's FS; llamart shares them with its module
  // (the same Blobs mounted again, the same MEMFS bytes) when a model is loaded
  for (const [dir, { mount, files }] of Object.entries(config.blobs || {})) {
    if (mount) {
      const blobs = [];
      for (const f of files) blobs.push({ name: f.name, data: await (await fetch(f.url)).blob() });
      LlamartPyodide.mountBlobs({}, pyodide, dir, blobs);
      continue;
    }
    LlamartPyodide.mkdirTree(pyodide.FS, dir);
    for (const f of files) {
      pyodide.FS.writeFile(dir + "/" + f.name, new Uint8Array(await (await fetch(f.url)).arrayBuffer()));
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
