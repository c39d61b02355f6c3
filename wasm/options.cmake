# emscripten settings that must be in place before llama.cpp is added (included by the
# top-level CMakeLists.txt when EMSCRIPTEN is true).  Measured with Debian's emcc 3.1.6.

# ggml picks its WASM SIMD kernels by this name; emcc's toolchain file says "x86" unless
# -DEMSCRIPTEN_SYSTEM_PROCESSOR=wasm32 was given, which would select generic C code.
set(CMAKE_SYSTEM_PROCESSOR wasm32)
# 64-bit memory needs a newer emcc and engine flags; a page of its own is HTML we do not ship.
set(LLAMA_WASM_MEM64 OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_HTML OFF CACHE BOOL "" FORCE)
set(GGML_OPENMP OFF CACHE BOOL "" FORCE)   # ggml's own pthreads pool, never OpenMP
# Two builds of one module: single-threaded (build-wasm, runs anywhere) and pthreads
# (build-wasm-mt: SharedArrayBuffer, so Node or a cross-origin isolated page). `-pthread`
# must be on every object file, llama.cpp's included, hence a build folder of its own.
option(LLAMART_WASM_THREADS "WebAssembly with pthreads (llamart_wasm_mt.js)" OFF)
if(LLAMART_WASM_THREADS)
  add_compile_options(-pthread)
  add_link_options(-pthread)
endif()
# Native WebAssembly exceptions: without them a failed load throws a bare number into JS and
# leaves the module unusable; with them llama.cpp catches its own exceptions and returns NULL.
# They must be on for every object file and at link time.
add_compile_options(-fwasm-exceptions -msimd128)
add_link_options(-fwasm-exceptions)
# Relaxed SIMD (build-wasm-relaxed, build-wasm-mt-relaxed): the same modules with ggml's q4_1 x
# q8_1 vec dot replaced by wasm/relaxed/ggml_wasm_relaxed.c and the four-row kernels
# (wasm/mat_vec/) built with the relaxed dot, both compiled by a clang >= 16
# (LLAMART_RELAXED_CLANG) because emcc 3.1.6's clang 14 has no relaxed-SIMD dot; the pinned
# ggml's copy is left out with LLAMART_WASM_RELAXED_Q4_1 (cmake/patches/wasm-relaxed-q4_1.patch).
# Engines without relaxed SIMD reject the whole module: wasm/llamart_pyodide.js probes first.
option(LLAMART_WASM_RELAXED_SIMD "relaxed-SIMD module variant (llamart_wasm*_relaxed.js)" OFF)
