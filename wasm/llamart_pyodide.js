/*
 * Glue between the emscripten build of the llamart C API (llamart_wasm.js + llamart_wasm.wasm)
 * and Pyodide: loads the module and registers it as the Python module `llamart_wasm`, which
 * llamart/bindings/wasm.py drives through Pyodide's JS FFI.
 *
 * Plain script: works as a CommonJS module in Node (require) and as a classic script in a
 * browser page or worker (importScripts), where it defines the global `LlamartPyodide`.
 *
 *   const M = await LlamartPyodide.load(pyodide, {
 *     glue: ".../llamart_wasm.js", wasm: ".../llamart_wasm.wasm",            // single-threaded
 *     threaded: {glue: ".../llamart_wasm_mt.js", wasm: ".../llamart_wasm_mt.wasm"},  // optional
 *   });
 *   // Python: import llamart_wasm  -> the emscripten Module; M.llamartBuild: "threads" | "single"
 *
 * Either build may name a relaxed-SIMD variant of itself, `relaxed: {glue, wasm}` (python -m
 * wasm.build --relaxed: llamart_wasm_relaxed.js, llamart_wasm_mt_relaxed.js): it is loaded
 * where the engine validates relaxed SIMD (Chrome/Edge >= 114, Node >= 22; not Firefox or
 * Safari yet), since one unknown opcode makes the whole module fail; `relaxedSimd: false`
 * keeps the plain one.  M.llamartRelaxedSimd tells which was loaded.
 *
 * With `threaded`, the pthreads build is loaded where it can run (Node, or a page that is
 * cross-origin isolated: COOP/COEP headers, so SharedArrayBuffer exists) and the
 * single-threaded one elsewhere; `threads: false` forces the single-threaded build and
 * `threads: true` fails where the threaded one cannot run.
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

  /** Can a pthreads module run here?  It needs SharedArrayBuffer: Node, or an isolated page. */
  function threadsAvailable() {
    if (typeof SharedArrayBuffer === "undefined") return false;
    // eslint-disable-next-line no-undef
    return IN_NODE || (typeof crossOriginIsolated !== "undefined" && crossOriginIsolated === true);
  }

  /** The cores this runtime reports (what emscripten_num_logical_cores() answers). */
  function cores() {
    // eslint-disable-next-line no-undef
    if (IN_NODE) return require("os").cpus().length || 1;
    return (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1;
  }

  /**
   * Does this engine run relaxed SIMD?  A one-function module using the opcode the relaxed
   * builds rely on (i16x8.relaxed_dot_i8x16_i7x16_s, 0xfd 0x112) must validate.
   */
  function relaxedSimdAvailable() {
    if (typeof WebAssembly !== "object" || typeof WebAssembly.validate !== "function") return false;
    const zero = [0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];  // v128.const 0
    const body = [0, ...zero, ...zero, 0xfd, 0x92, 0x02, 0x0b];
    try {
      return WebAssembly.validate(new Uint8Array([
        0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,  // magic, version
        1, 5, 1, 0x60, 0, 1, 0x7b,           // type: () -> v128
        3, 2, 1, 0,                          // one function of that type
        10, body.length + 2, 1, body.length, ...body]));
    } catch (e) {
      return false;
    }
  }

  /** The build, or its relaxed-SIMD variant where that runs (see the header comment). */
  function withRelaxed(build, relaxed, options) {
    if (!relaxed || options.relaxedSimd === false || !relaxedSimdAvailable()) {
      return Object.assign(build, { relaxedSimd: false });
    }
    return Object.assign(build, { glue: relaxed.glue, wasm: relaxed.wasm, relaxedSimd: true });
  }

  /** Which build to load: {glue, wasm, threaded, relaxedSimd} (see the header comment). */
  function chooseBuild(options) {
    const plain = { glue: options.glue, wasm: options.wasm, threaded: false };
    const single = withRelaxed(plain, options.relaxed, options);
    const mt = options.threaded;
    if (options.threads === false || (!mt && options.threads !== true)) return single;
    if (!mt) throw new Error("llamart: threads: true, but no threaded build was given (options.threaded)");
    if (threadsAvailable()) {
      return withRelaxed({ glue: mt.glue, wasm: mt.wasm, threaded: true }, mt.relaxed, options);
    }
    if (options.threads === true) {
      throw new Error("llamart: the threaded WebAssembly module needs SharedArrayBuffer " +
        "(SharedArrayBuffer is not defined: serve the page cross-origin isolated, with " +
        "Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)");
    }
    return single;
  }

  /**
   * Instantiate the llamart WebAssembly module.
   * options.glue / options.wasm: paths (Node) or URLs (browser) of llamart_wasm.js/.wasm;
   * options.threaded / options.threads: the pthreads build and the choice (header comment).
   * options.print / options.printErr: where the module's stdout/stderr go.
   * options.env: variables for the module's environment (getenv in C), set before it starts.
   */
  async function instantiate(options) {
    const build = chooseBuild(options);
    const factory = await loadFactory(build.glue);
    if (typeof factory !== "function") {
      throw new Error(`llamart: ${build.glue} did not define the LlamartWasm factory`);
    }
    const settings = {
      wasmBinary: await wasmBytes(build.wasm),
      print: options.print || ((s) => console.log(s)),
      printErr: options.printErr || ((s) => console.warn(s)),
    };
    if (options.env) {
      // the module's environment (getenv in C), e.g. {LLAMART_WASM_MAT_VEC: "0"}
      settings.preRun = [(m) => Object.assign(m.ENV, options.env)];
    }
    if (build.threaded) {
      // the calling thread computes too: one pool worker per other core (the C core caps
      // n_threads at the cores, so a decode never waits for a worker the pool lacks)
      settings.llamartPool = Math.max(1, cores() - 1);
      if (!IN_NODE) {
        // the glue was evaluated from text: tell the pool's workers where it and the worker
        // script are, or they are fetched relative to the calling worker and 404
        const url = new URL(build.glue, self.location.href).href;
        settings.mainScriptUrlOrBlob = url;
        settings.locateFile = (file) => new URL(file, url).href;
      }
    }
    const module = await factory(settings);
    if (build.threaded) await poolLoaded(module);
    module.llamartBuild = build.threaded ? "threads" : "single";
    module.llamartRelaxedSimd = build.relaxedSimd;
    return module;
  }

  /**
   * The pthreads build is linked with PTHREAD_POOL_DELAY_LOAD (for llamart's own loader, see
   * llamart/bindings/pyodide_loader.js): its factory resolves before the pool's workers have
   * loaded.  Wait for them here, or a decode run right after could wait for a thread forever.
   */
  function poolLoaded(module) {
    const pool = (module.PThread && module.PThread.unusedWorkers) || [];
    return new Promise((resolve) => {
      const poll = () => (pool.every((w) => w.loaded) ? resolve() : setTimeout(poll, 5));
      poll();
    });
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

  return { instantiate, load, mountHost, mountBlobs, mkdirTree, chooseBuild, threadsAvailable,
           relaxedSimdAvailable, IN_NODE };
});
