"""llama-cpp-python's own server, run by the bench venv's Python:
``.cache/bench-venv/bin/python bench/worker_llama_cpp_python_server.py SERVER_ARGS...``.

Standalone (stdlib + llama_cpp[server]). The venv's llama_cpp has no llama.cpp of its own: it
loads the libraries of ``LLAMA_CPP_LIB_PATH`` (bench's llama-server build, same pinned source),
whose CPU variants are loaded here first (ggml picks the best for the host, as llama-server
does), so all three servers run the same kernels.
"""

from __future__ import annotations

import ctypes
import os
import sys


def main() -> int:
    lib = os.environ["LLAMA_CPP_LIB_PATH"]
    ggml = ctypes.CDLL(os.path.join(lib, "libggml.so"), mode=ctypes.RTLD_GLOBAL)
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load_all_from_path(lib.encode())
    from llama_cpp.server.__main__ import main as serve

    serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
