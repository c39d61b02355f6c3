// Runs the pytest suite inside Pyodide under Node.  Usage: node run_node.cjs CONFIG.json
// (written by `python -m tools.pyodide_runner --runtime node`).  Exits with pytest's exit code.
// llamart comes from its Pyodide wheel (micropip, in bootstrap.py), which loads the WebAssembly
// module itself.
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

  // The checkout, and the folders outside it that the run needs (fixtures, test folders named
  // on the command line), at the same absolute paths as on the host (NODEFS); bootstrap.py
  // mounts them in the module's FS too (config.share).
  const inside = (dir, root) => dir === root || dir.startsWith(root + "/");
  const outside = config.trees.filter((dir) => !inside(dir, config.repo));
  for (const dir of [config.repo, ...outside]) {
    pyodide.FS.mkdirTree(dir);
    pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: dir }, dir);
  }
  config.share = [config.repo, ...outside];
  const bootstrap = fs.readFileSync(path.join(__dirname, "bootstrap.py"), "utf8");
  pyodide.globals.set("CONFIG", JSON.stringify(config));
  const code = await pyodide.runPythonAsync(bootstrap, { filename: "bootstrap.py" });
  process.stdout.write("", () => process.exit(code));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(3);
});
