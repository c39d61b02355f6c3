// Runs the pytest suite inside Pyodide under Node.  Usage: node run_node.cjs CONFIG.json
// (written by `python -m tools.pyodide_runner --runtime node`).  Exits with pytest's exit code.
"use strict";
const fs = require("fs");
const path = require("path");

async function main() {
  const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const { loadPyodide } = require(path.join(config.pyodideDir, "pyodide.js"));
  const write = (stream) => ({
    write(buf) {
      stream.write(buf);
      return buf.length;
    },
  });
  const pyodide = await loadPyodide({ indexURL: config.pyodideDir + "/" });
  pyodide.setStdout(write(process.stdout));
  pyodide.setStderr(write(process.stderr));

  const glue = require(config.glueJs);
  const mounted = [];
  const mount = (module, dir) => {
    if (mounted.some((m) => inside(dir, m))) return;
    glue.mountHost(module, null, dir);
    mounted.push(dir);
  };
  // The checkout, and the folders outside it that the run needs (fixtures, test folders named
  // on the command line), at the same absolute paths as on the host.
  const inside = (dir, root) => dir === root || dir.startsWith(root + "/");
  const outside = config.trees.filter((dir) => !inside(dir, config.repo));
  glue.mkdirTree(pyodide.FS, config.repo);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: config.repo }, config.repo);
  for (const dir of outside) {
    glue.mkdirTree(pyodide.FS, dir);
    pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: dir }, dir);
  }
  if (config.wasm) {
    const module = await glue.load(pyodide, {
      glue: config.wasm.glue,
      wasm: config.wasm.wasm,
      threaded: config.wasm.threaded,
      threads: config.threads,
      print: (s) => process.stdout.write(s + "\n"),
      printErr: (s) => process.stderr.write(s + "\n"),
    });
    mount(module, config.repo);
    for (const dir of outside) mount(module, dir);
  }
  const bootstrap = fs.readFileSync(path.join(__dirname, "bootstrap.py"), "utf8");
  pyodide.globals.set("CONFIG", JSON.stringify(config));
  const code = await pyodide.runPythonAsync(bootstrap, { filename: "bootstrap.py" });
  process.stdout.write("", () => process.exit(code));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(3);
});
