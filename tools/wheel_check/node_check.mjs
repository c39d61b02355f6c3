// The Pyodide wheel in Node, as a user installs it: stock Pyodide from npm, micropip from its
// wheel, `micropip.install` of the llamart wheel (deps=False) beside local jinja2/markupsafe
// wheels, then chat_check.py.  Usage: node node_check.mjs CONFIG.json, with CONFIG
// {micropip, wheels: [...], model, check}: host paths, and env (variables for Python).  Prints one line
// "WHEEL_CHECK_RESULT <json>" and exits 0, or prints the error and exits 1.
import { readFileSync } from "node:fs";
import { dirname } from "node:path";
import { loadPyodide } from "pyodide";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const pyodide = await loadPyodide({ env: { HOME: "/home/pyodide", ...(config.env || {}) } });
// the host folders holding the wheels and the model, at the same paths (NODEFS: no copy)
const folders = [...new Set([...config.wheels, config.model].map((p) => dirname(p)))];
for (const dir of folders) {
  if (pyodide.FS.analyzePath(dir).exists) continue;
  pyodide.FS.mkdirTree(dir);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: dir }, dir);
}
await pyodide.loadPackage(config.micropip);
pyodide.globals.set("WHEELS", pyodide.toPy(config.wheels.map((p) => "emfs:" + p)));
await pyodide.runPythonAsync(`
import micropip
await micropip.install(list(WHEELS), deps=False)
`);
pyodide.runPython(readFileSync(config.check, "utf8"));
const report = pyodide.globals.get("chat_report")(config.model);
console.log("WHEEL_CHECK_RESULT " + report);
