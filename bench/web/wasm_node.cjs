// One llamart WebAssembly measurement in Pyodide under Node: node wasm_node.cjs CONFIG.json
// CONFIG: {pyodideDir, glueJs, wasm: {glue, wasm}, repo, entry, modelDir, modelFsDir, job}. The
// repo folder is mounted at its own path in Pyodide's and the module's file systems, the model's
// folder (modelDir) at modelFsDir.
// Prints "BENCH-RESULT {json}".
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const { loadPyodide } = require(path.join(config.pyodideDir, "pyodide.js"));
  const pyodide = await loadPyodide({ indexURL: config.pyodideDir + "/" });
  pyodide.setStdout({ batched: (s) => process.stderr.write(s + "\n") });
  const glue = require(config.glueJs);
  const module = await glue.load(pyodide, {
    glue: config.wasm.glue,
    wasm: config.wasm.wasm,
    threaded: config.wasm.threaded,
    threads: config.wasm.threads,
    print: (s) => process.stderr.write(s + "\n"),
    printErr: (s) => process.stderr.write(s + "\n"),
  });
  glue.mountHost(module, pyodide, config.repo);
  if (config.modelDir) glue.mountHost(module, pyodide, config.modelDir, config.modelFsDir);
  pyodide.globals.set("JOB", JSON.stringify({ ...config.job, repo: config.repo }));
  const out = await pyodide.runPythonAsync(fs.readFileSync(config.entry, "utf8"));
  process.stdout.write("BENCH-RESULT " + out + "\n", () => process.exit(0));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(3);
});
