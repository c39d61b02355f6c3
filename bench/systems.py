"""The native systems under test, each measured in its own child process:

- ``llamart``: llamart's native backend through the Engine (bench/worker_llamart.py);
- ``llama-bench``: llama.cpp's own benchmark tool, built from the same pinned source with the
  same portable flags (GGML_NATIVE=OFF) into build/bench;
- ``llama-cpp-python``: the pinned llama-cpp-python version (the sdist llamart takes its
  llama.cpp from) in the bench-only venv .cache/bench-venv. It is installed without compiling
  its own copy of llama.cpp (``-DLLAMA_BUILD=OFF``) and loads, through its documented
  ``LLAMA_CPP_LIB_PATH``, the libllama that llama-bench uses: the same source, flags and binary,
  so the comparison isolates the Python layer (and saves a second ~6-40 min compile).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .config import (
    LLAMA_BENCH_BUILD,
    N_BATCH,
    REPO,
    VENV,
    ModelSpec,
    llama_source_dir,
    native_lib_dir,
    read_pin,
)
from .proc import BenchError, run_child

LLAMA_BENCH_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=OFF",
    "-DGGML_CCACHE=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_UI=OFF",
]
# no bundled llama.cpp (LLAMA_CPP_LIB_PATH points at build/bench/bin); llava/mtmd is not needed
# for text models and llama_cpp imports it lazily
LLAMA_CPP_PYTHON_CMAKE_ARGS = "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"


def _nice() -> list[str]:
    return ["nice", "-n", "10"] if sys.platform.startswith("linux") else []


def llama_bench_binary() -> Path:
    return LLAMA_BENCH_BUILD / "bin" / "llama-bench"


def ensure_llama_bench(log=print, build: Path = LLAMA_BENCH_BUILD,
                       flags: list[str] | None = None) -> Path:
    """Build llama-bench from the pinned llama.cpp source (once; later runs reuse ``build``)."""
    binary = build / "bin" / "llama-bench"
    if binary.exists():
        return binary
    src = llama_source_dir()
    if not (src / "CMakeLists.txt").exists():
        raise BenchError(f"the pinned llama.cpp source is missing at {src}: run the main build "
                         "first (cmake -S . -B build/dev), which fetches and extracts it")
    log(f"bench: building llama-bench from {src} into {build} (several minutes)")
    subprocess.run([*_nice(), "cmake", "-S", str(src), "-B", str(build),
                    *(flags or LLAMA_BENCH_FLAGS)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*_nice(), "cmake", "--build", str(build), "-j",
                    str(os.cpu_count() or 2), "--target", "llama-bench"], check=True,
                   stdout=subprocess.DEVNULL)
    return binary


LLAMA_SERVER_BUILD = REPO / "build" / "bench-server"
# llama-server as llamart ships ggml: every CPU variant, the best picked at run time (with our
# patches of the pinned source, applied when it was extracted), so both use the same kernels
LLAMA_SERVER_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON", "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF",
]


def ensure_llama_server(log=print, build: Path = LLAMA_SERVER_BUILD) -> Path:
    """Build llama-server (and ggml's CPU variants beside it) from the pinned source, once."""
    binary = build / "bin" / "llama-server"
    if binary.exists():
        return binary
    src = llama_source_dir()
    if not (src / "CMakeLists.txt").exists():
        raise BenchError(f"the pinned llama.cpp source is missing at {src}: build llamart first")
    log(f"bench: building llama-server from {src} into {build} (several minutes)")
    subprocess.run([*_nice(), "cmake", "-S", str(src), "-B", str(build), *LLAMA_SERVER_FLAGS],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*_nice(), "cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)
    return binary


def venv_python() -> Path:
    return VENV / "bin" / "python"


def llama_cpp_python_version() -> str:
    return read_pin()["LLAMART_LLAMA_SDIST_VERSION"]


def ensure_llama_cpp_python(log=print, server: bool = False) -> Path:
    """The bench venv with the pinned llama-cpp-python (pure install, about a minute);
    ``server``: with its ``[server]`` extra (FastAPI, uvicorn, sse-starlette)."""
    python = venv_python()
    version = llama_cpp_python_version()
    # by the installed metadata: importing llama_cpp loads a libllama, which may not be built yet
    probe = [str(python), "-c", "from importlib.metadata import version as v; "
             "print(v('llama_cpp_python'))" + ("; v('sse-starlette')" if server else "")]
    if python.exists():
        got = subprocess.run(probe, capture_output=True, text=True, env=_lcpp_env())
        if got.returncode == 0 and got.stdout.strip() == version:
            return python
    pin = read_pin()
    package = pin["LLAMART_LLAMA_SDIST_PACKAGE"]
    log(f"bench: installing {package}=={version} into {VENV}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CPP_PYTHON_CMAKE_ARGS,
           "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    downloads = REPO / ".cache" / "downloads"  # the sdist the main build already fetched
    subprocess.run([*_nice(), str(python), "-m", "pip", "install", "--disable-pip-version-check",
                    "--find-links", str(downloads),
                    f"{package}{'[server]' if server else ''}=={version}"], check=True, env=env)
    return python


def _lcpp_env() -> dict[str, str]:
    return {**os.environ, "LLAMA_CPP_LIB_PATH": str(llama_bench_binary().parent),
            "GGML_NO_BACKTRACE": "1"}


def _job(spec: ModelSpec, threads: int, prompt: list[int], **extra: Any) -> dict[str, Any]:
    return {"model": str(spec.file), "n_ctx": spec.n_ctx, "n_batch": N_BATCH, "n_threads": threads,
            "prompt": prompt, "n_gen": spec.n_gen, "reps": spec.reps, **extra}


def run_llamart(spec: ModelSpec, threads: int, prompt: list[int], kind: str = "speed",
                lib_dir: str | None = None, **extra: Any) -> dict[str, Any]:
    """One llamart job in a child process; ``lib_dir``: another build's libllamart folder."""
    job = _job(spec, threads, prompt, kind=kind, backend="native", **extra)
    return run_llamart_job(job, lib_dir)


def run_llamart_job(job: dict[str, Any], lib_dir: str | None = None) -> dict[str, Any]:
    """Any bench.llamart_job function (``job["kind"]``) in a child process, natively."""
    env = {"GGML_NO_BACKTRACE": "1"}
    lib = lib_dir or native_lib_dir()
    if lib:
        env["LLAMART_LIB_DIR"] = lib
    run = run_child([sys.executable, "-m", "bench.worker_llamart", json.dumps(job)], env=env,
                    cwd=str(REPO))
    return {**run.result(), "maxrss_mb": run.maxrss_mb}


def run_venv_script(script: str | Path, job: dict[str, Any]) -> dict[str, Any]:
    """A standalone script run by the bench venv's Python (llama-cpp-python)."""
    run = run_child([str(venv_python()), str(script), json.dumps(job)], env=_lcpp_env())
    return {**run.result(), "maxrss_mb": run.maxrss_mb}


def run_llama_cpp_python(spec: ModelSpec, threads: int, prompt: list[int]) -> dict[str, Any]:
    script = Path(__file__).with_name("worker_llama_cpp_python.py")
    job = _job(spec, threads, prompt)
    run = run_child([str(venv_python()), str(script), json.dumps(job)], env=_lcpp_env())
    return {**run.result(), "maxrss_mb": run.maxrss_mb}


def run_llama_bench(spec: ModelSpec, threads: int, prompt: list[int],
                    binary: Path | None = None) -> dict[str, Any]:
    """One llama-bench run (its own warm-up, then ``reps`` repetitions of pp and of tg). Load:
    from its "starting" progress line to its first "warmup" line (model load + context)."""
    cmd = [str(binary or llama_bench_binary()), "-m", str(spec.file), "-p", str(len(prompt)),
           "-n", str(spec.n_gen), "-t", str(threads), "-b", str(N_BATCH), "-ub", str(N_BATCH),
           "-r", str(spec.reps), "-o", "json", "--progress"]
    run = run_child(cmd)
    tests = json.loads(run.stdout)
    pp = [t for t in tests if t["n_prompt"] > 0 and t["n_gen"] == 0]
    tg = [t for t in tests if t["n_gen"] > 0 and t["n_prompt"] == 0]
    if not pp or not tg:
        raise BenchError(f"unexpected llama-bench output: {run.stdout[:500]}")
    stamps = {}
    for t, line in run.stderr_lines:
        if "benchmark 1/" in line:
            for word in ("starting", "warmup"):
                if word in line and word not in stamps:
                    stamps[word] = t
    load = stamps["warmup"] - stamps["starting"] if len(stamps) == 2 else None
    return {
        "load_s": load,
        "pp_s": [ns / 1e9 for ns in pp[0]["samples_ns"]],
        "tg_s": [ns / 1e9 for ns in tg[0]["samples_ns"]],
        "tg_tokens": [spec.n_gen] * len(tg[0]["samples_ns"]),
        "maxrss_mb": run.maxrss_mb,
        "build_commit": tests[0].get("build_commit"),
        "cpu_info": tests[0].get("cpu_info"),
    }


RUNNERS = {
    "llamart": run_llamart,
    "llama-bench": run_llama_bench,
    "llama-cpp-python": run_llama_cpp_python,
}
