# emscripten settings that must be in place before llama.cpp is added (included by the
# top-level CMakeLists.txt when EMSCRIPTEN is true).  Measured with Debian's emcc 3.1.6.

# ggml picks its WASM SIMD kernels by this name; emcc's toolchain file says "x86" unless
# -DEMSCRIPTEN_SYSTEM_PROCESSOR=wasm32 was given, which would select generic C code.
set(CMAKE_SYSTEM_PROCESSOR wasm32)
# 64-bit memory needs a newer emcc and engine flags; a page of its own is HTML we do not ship.
set(LLAMA_WASM_MEM64 OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_HTML OFF CACHE BOOL "" FORCE)
set(GGML_OPENMP OFF CACHE BOOL "" FORCE)   # single-threaded build (no pthreads)
# Native WebAssembly exceptions: without them a failed load throws a bare number into JS and
# leaves the module unusable; with them llama.cpp catches its own exceptions and returns NULL.
# They must be on for every object file and at link time.
add_compile_options(-fwasm-exceptions -msimd128)
add_link_options(-fwasm-exceptions)
