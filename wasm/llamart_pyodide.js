/*
 * Glue between the emscripten build of the llamart C API (llamart_wasm.js + llamart_wasm.wasm)
 * and Pyodide: loads the module and registers it as the Python module `llamart_wasm`, which
 * llamart/backends/wasm.py drives through Pyodide's JS FFI.
 *
 * Plain script: works as a CommonJS module in Node (require) and as a classic script in a
 * browser page or worker (importScripts), where it defines the global `LlamartPyodide`.
 *
 *   const M = await LlamartPyodide.load(pyodide, {glue: ".../llamart_wasm.js",
 *                                                 wasm: ".../llamart_wasm.wasm"});
 *   // Python: import llamart_wasm  -> the emscripten Module
 *
 * The module has its own file system (separate from Pyodide's): mountHost / mountBlobs make
 * the same files visible in both at the same path without copying them.
 */
(function (root, factory) {
  const api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.LlamartPyodide = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  const IN_NODE = typeof process === "object" && !!(process.versions && process.versions.node);

  /** Load the emscripten factory (the MODULARIZE function LlamartWasm) from its JS file. */
  async function loadFactory(glue) {
    if (IN_NODE) {
      // eslint-disable-next-line no-undef
      return require(glue);
    }
    if (typeof importScripts === "function") {
      try {
        importScripts(glue); // classic worker
        return self.LlamartWasm;
      } catch (e) {
        // module worker: importScripts throws; fall through to fetch + evaluate
      }
    }
    const text = await (await fetch(glue)).text();
    // eslint-disable-next-line no-new-func
    return new Function(text + "\n;return LlamartWasm;")();
  }

  /** Bytes of the .wasm file (emcc 3.1.6's glue cannot fetch a file path under Node). */
  async function wasmBytes(wasm) {
    if (IN_NODE) {
      // eslint-disable-next-line no-undef
      return require("fs").readFileSync(wasm);
    }
    const resp = await fetch(wasm);
    if (!resp.ok) throw new Error(`llamart: cannot fetch ${wasm}: HTTP ${resp.status}`);
    return new Uint8Array(await resp.arrayBuffer());
  }

  /**
   * Instantiate the llamart WebAssembly module.
   * options.glue / options.wasm: paths (Node) or URLs (browser) of llamart_wasm.js/.wasm.
   * options.print / options.printErr: where the module's stdout/stderr go.
   */
  async function instantiate(options) {
    const factory = await loadFactory(options.glue);
    if (typeof factory !== "function") {
      throw new Error(`llamart: ${options.glue} did not define the LlamartWasm factory`);
    }
    const module = await factory({
      wasmBinary: await wasmBytes(options.wasm),
      print: options.print || ((s) => console.log(s)),
      printErr: options.printErr || ((s) => console.warn(s)),
    });
    return module;
  }

  /** mkdir -p in an emscripten FS. */
  function mkdirTree(FS, path) {
    let cur = "";
    for (const part of path.split("/").filter(Boolean)) {
      cur += "/" + part;
      if (!FS.analyzePath(cur).exists) FS.mkdir(cur);
    }
  }

  /**
   * Node only: mount a host directory (read/write, no copy) at the same path in the module's
   * FS and, when given, in Pyodide's FS, so a path means the same file on both sides.
   */
  function mountHost(module, pyodide, hostDir, fsDir) {
    fsDir = fsDir || hostDir;
    for (const FS of [module.FS, pyodide && pyodide.FS]) {
      if (!FS) continue;
      mkdirTree(FS, fsDir);
      FS.mount(FS.filesystems.NODEFS, { root: hostDir }, fsDir);
    }
    return fsDir;
  }

  /**
   * Browser worker only: mount File/Blob objects read-only (WORKERFS: read on demand from the
   * Blob, no copy) at fsDir in the module's FS and in Pyodide's FS. Returns the file paths.
   * blobs: [{name, data: Blob}] (or File objects, which carry their own names).
   */
  function mountBlobs(module, pyodide, fsDir, blobs) {
    const entries = blobs.map((b) => (b instanceof Blob && b.name ? { name: b.name, data: b } : b));
    for (const FS of [module.FS, pyodide && pyodide.FS]) {
      if (!FS) continue;
      mkdirTree(FS, fsDir);
      FS.mount(FS.filesystems.WORKERFS, { blobs: entries }, fsDir);
    }
    return entries.map((e) => fsDir.replace(/\/$/, "") + "/" + e.name);
  }

  /** Instantiate the module and register it in Pyodide as `import llamart_wasm`. */
  async function load(pyodide, options) {
    const module = await instantiate(options);
    pyodide.registerJsModule(options.name || "llamart_wasm", module);
    return module;
  }

  return { instantiate, load, mountHost, mountBlobs, mkdirTree, IN_NODE };
});
