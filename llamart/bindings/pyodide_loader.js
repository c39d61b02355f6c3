/*
 * Makes the llamart WebAssembly module from its files' contents, synchronously, inside stock
 * Pyodide (evaluated by llamart/bindings/pyodide_loader.py with pyodide.code.run_js; the
 * value of this file is the loader object).  No script tag, no URL: the glue text, the .wasm
 * bytes and the pthreads worker script come from the installed package.
 *
 * - The glue is evaluated with `new Function` (no global leaks); Node's modules come from
 *   process.getBuiltinModule (Node >= 20.16), which works under ESM and CommonJS drivers.
 * - The .wasm is compiled and instantiated synchronously (instantiateWasm), so the module is
 *   ready when the factory returns.  The pthreads build is linked with
 *   PTHREAD_POOL_DELAY_LOAD: in Node its pool workers are marked loaded right away (each
 *   handles its 'load' message before any 'run'); a browser starts them only once the caller
 *   yields to the event loop, which it awaits with poolReady (pyodide_loader.py).
 * - Pool workers start from the worker script's text: in Node a worker_threads Worker with
 *   `eval: true` (the glue text in workerData; unref'd so Node can exit), in a browser a Blob
 *   URL (the glue as mainScriptUrlOrBlob).  In Node the pool never keeps the process alive
 *   (unref'd, and the glue's ref() calls are ignored).
 * - The glue's process.on("uncaughtException" / "unhandledRejection") handlers are dropped:
 *   a library must not make the host's unhandled rejections fatal.
 */
(function () {
  "use strict";

  const IN_NODE = typeof process === "object" && !!(process.versions && process.versions.node);
  const FATAL_EVENTS = new Set(["uncaughtException", "unhandledRejection"]);

  /** What this runtime lacks to run the module ("" when nothing). */
  function missing() {
    if (typeof WebAssembly !== "object") return "WebAssembly";
    if (typeof WebAssembly.Tag !== "function") {
      return "WebAssembly exception handling (WebAssembly.Tag: the module is built with " +
        "-fwasm-exceptions; Chrome/Edge >= 95, Firefox >= 100, Safari >= 15.2, Node >= 17)";
    }
    if (IN_NODE && typeof process.getBuiltinModule !== "function") {
      return `process.getBuiltinModule (Node >= 20.16; this is Node ${process.version})`;
    }
    return "";
  }

  /**
   * Does this engine run relaxed SIMD (the llamart_wasm*_relaxed builds)?  A module with one
   * unknown opcode fails entirely, so a one-function module using the opcode those builds rely
   * on (i16x8.relaxed_dot_i8x16_i7x16_s, 0xfd 0x112) must validate first.
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

  /** Can the pthreads build run here?  SharedArrayBuffer: Node, or an isolated page. */
  function threadsAvailable() {
    if (typeof SharedArrayBuffer === "undefined") return false;
    // eslint-disable-next-line no-undef
    return IN_NODE || (typeof crossOriginIsolated !== "undefined" && crossOriginIsolated === true);
  }

  /** The cores this runtime reports. */
  function cores() {
    if (IN_NODE) return process.getBuiltinModule("os").cpus().length || 1;
    return (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1;
  }

  /** `process` for the glue, without its fatal unhandled-error handlers. */
  function quietProcess() {
    return new Proxy(process, {
      get(target, prop) {
        if (prop === "on" || prop === "addListener") {
          return (event, fn) => (FATAL_EVENTS.has(event) ? target : target.on(event, fn));
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }

  /** Node: a worker_threads Worker class starting pool workers from the scripts' text. */
  function nodeWorkerClass(workerText, glueText) {
    const wt = process.getBuiltinModule("worker_threads");
    const code = workerText + `
;(function () {
  const glue = require("worker_threads").workerData.llamartGlue;
  global.importScripts = function () {
    global.LlamartWasm = new Function("require", "__dirname", "__filename",
      glue + "\\n;return LlamartWasm;")(require, "/", "/llamart_wasm_mt.js");
  };
})();`;
    return class LlamartWorker extends wt.Worker {
      constructor(_file, options) {
        super(code, { ...(options || {}), eval: true, workerData: { llamartGlue: glueText } });
        this.unref(); // a pool waiting for work must not keep Node alive
      }

      ref() {
        // the glue refs a worker while it hosts a thread; ggml's threads live as long as a
        // context and only compute inside a synchronous call, so they never keep Node alive
        return this;
      }

      on(event, listener) {
        super.on(event, listener);
        this.unref(); // a new 'message' listener refs the worker's port again
        return this;
      }
    };
  }

  /** The glue's MODULARIZE factory, evaluated without touching the global scope. */
  function factoryOf(glueText, worker) {
    let req;
    let proc;
    if (IN_NODE) {
      const wt = process.getBuiltinModule("worker_threads");
      const patched = worker ? { ...wt, Worker: nodeWorkerClass(worker, glueText) } : wt;
      req = (name) => (name === "worker_threads" || name === "node:worker_threads"
        ? patched : process.getBuiltinModule(name));
      proc = quietProcess();
    }
    // eslint-disable-next-line no-new-func
    const make = new Function("require", "__dirname", "__filename", "process",
      glueText + "\n;return LlamartWasm;");
    return make(req, "/", "/llamart_wasm.js", proc);
  }

  /**
   * Make the module: opts = {glue: text, wasm: Uint8Array, worker: text (pthreads build) or
   * null, name: the glue's file name (for messages), print, printErr}.  Returns it ready.
   */
  function load(opts) {
    const lacking = missing();
    if (lacking) throw new Error(`this runtime lacks ${lacking}`);
    const threaded = !!opts.worker;
    const factory = factoryOf(opts.glue, threaded ? opts.worker : null);
    if (typeof factory !== "function") throw new Error(`${opts.name} defines no LlamartWasm`);
    let compiled;
    try {
      compiled = new WebAssembly.Module(opts.wasm);
    } catch (e) {
      throw new Error(`cannot compile ${opts.name.replace(/\.js$/, ".wasm")} here: ${e.message}`);
    }
    const settings = {
      print: opts.print || ((s) => console.log(s)),
      printErr: opts.printErr || ((s) => console.warn(s)),
      instantiateWasm(info, receive) {
        const instance = new WebAssembly.Instance(compiled, info);
        receive(instance, compiled);
        return instance.exports;
      },
    };
    if (threaded) {
      // the calling thread computes too: one pool worker per other core (the C core caps
      // n_threads at the cores, so a decode never waits for a worker the pool lacks)
      settings.llamartPool = Math.max(1, cores() - 1);
      if (!IN_NODE) {
        const workerUrl = URL.createObjectURL(new Blob([opts.worker], { type: "text/javascript" }));
        settings.mainScriptUrlOrBlob = new Blob([opts.glue], { type: "text/javascript" });
        settings.locateFile = (file) => (file.endsWith(".worker.js") ? workerUrl : file);
      }
    }
    const ready = factory(settings); // settings becomes the module (MODULARIZE)
    if (ready && typeof ready.catch === "function") ready.catch(() => {});
    if (!settings.calledRun) {
      throw new Error(`${opts.name} did not initialise synchronously (is it a build linked ` +
        "with PTHREAD_POOL_DELAY_LOAD, see wasm/CMakeLists.txt?)");
    }
    if (threaded && !settings.PThread) throw new Error(`${opts.name} does not expose its thread pool`);
    if (threaded && IN_NODE) {
      // Node starts a worker thread at once, whatever the calling thread does; a browser
      // starts one only when its creator returns to the event loop (see poolReady)
      for (const w of settings.PThread.unusedWorkers) w.loaded = true;
    }
    settings.llamartBuild = threaded ? "threads" : "single";
    return settings;
  }

  /**
   * Resolves when every pool worker of `module` has loaded (at once in Node and for the
   * single-threaded build); rejects after `ms`.  A browser starts a worker only when its
   * creator yields to the event loop, so the caller must await this before the first decode.
   */
  function poolReady(module, ms) {
    const pool = module.PThread ? module.PThread.unusedWorkers : [];
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const poll = () => {
        if (pool.every((w) => w.loaded)) return resolve(pool.length);
        if (Date.now() - started > ms) {
          return reject(new Error(`the WebAssembly thread pool did not start in ${ms / 1000} s ` +
            `(${pool.filter((w) => w.loaded).length} of ${pool.length} workers loaded)`));
        }
        setTimeout(poll, 5);
      };
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
   * Make file `path` of Pyodide's FS readable at the same path in the module's FS without
   * copying it: a NODEFS or WORKERFS mount is mounted again (same host folder, same Blobs);
   * a MEMFS/IDBFS file gets a node sharing its contents array.  Returns the undo function,
   * or null when the file cannot be shared (the caller copies it).
   */
  function share(pyFS, modFS, path) {
    const node = pyFS.lookupPath(path, { follow: true }).node;
    let owner = node; // WORKERFS file nodes of emscripten 5 leave `mount` to their folder
    while (!owner.mount && owner.parent && owner.parent !== owner) owner = owner.parent;
    const mount = owner.mount;
    if (!mount) return null;
    const fss = pyFS.filesystems;
    const kind = (fss.NODEFS && mount.type === fss.NODEFS && "NODEFS") ||
      (fss.WORKERFS && mount.type === fss.WORKERFS && "WORKERFS") || null;
    if (kind && modFS.filesystems[kind]) {
      const point = mount.mountpoint;
      mkdirTree(modFS, point);
      if (modFS.isMountpoint(modFS.lookupPath(point, { follow_mount: false }).node)) return null;
      modFS.mount(modFS.filesystems[kind], mount.opts, point);
      return () => modFS.unmount(point);
    }
    if (!kind && node.contents && typeof node.contents.subarray === "function" &&
        typeof node.usedBytes === "number") {
      const dir = path.replace(/\/[^/]*$/, "") || "/";
      mkdirTree(modFS, dir);
      modFS.writeFile(path, new Uint8Array(0));
      const twin = modFS.lookupPath(path).node;
      twin.contents = node.contents; // the same JS array: nothing is copied
      twin.usedBytes = node.usedBytes;
      return () => modFS.unlink(path);
    }
    return null;
  }

  return { load, poolReady, share, missing, threadsAvailable, relaxedSimdAvailable, cores,
           IN_NODE };
})();
