"""What the benchmark measures and where it keeps things: paths, the pinned llama.cpp version,
model shapes and token counts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
BENCH_CACHE = CACHE / "bench"            # models, adapters, raw results
MODELS_DIR = BENCH_CACHE / "models"
RESULTS_JSON = BENCH_CACHE / "results.json"
VENV = CACHE / "bench-venv"              # llama-cpp-python lives here only
LLAMA_BENCH_BUILD = REPO / "build" / "bench"
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
PIN_FILE = REPO / "cmake" / "llama_cpp_pin.cmake"


def read_pin(path: Path = PIN_FILE) -> dict[str, str]:
    """The ``set(NAME "value")`` lines of cmake/llama_cpp_pin.cmake (the one place the pinned
    llama.cpp source is named)."""
    pins = dict(re.findall(r'^\s*set\(\s*(\w+)\s+"([^"]*)"\s*\)', path.read_text(), re.M))
    for key in ("LLAMART_LLAMA_SDIST_PACKAGE", "LLAMART_LLAMA_SDIST_VERSION"):
        if key not in pins:
            raise ValueError(f"{path}: no set({key} ...) line")
    return pins


def llama_source_dir() -> Path:
    """The extracted pinned llama.cpp tree (the main build's cmake step extracts it)."""
    pin = read_pin()
    name = pin["LLAMART_LLAMA_SDIST_PACKAGE"].replace("-", "_")
    return CACHE / f"{name}-{pin['LLAMART_LLAMA_SDIST_VERSION']}" / "vendor" / "llama.cpp"


def native_lib_dir() -> str | None:
    """LLAMART_LIB_DIR if set, else build/dev/bin when it holds a build (else the package's)."""
    if os.environ.get("LLAMART_LIB_DIR"):
        return os.environ["LLAMART_LIB_DIR"]
    dev = REPO / "build" / "dev" / "bin"
    return str(dev) if (dev / "libllamart.so").exists() else None


@dataclass(frozen=True)
class ModelSpec:
    """A generated benchmark model: random weights in the shape of a real one."""

    key: str
    shape_of: str
    dtype: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int
    n_prompt: int      # prompt-processing tokens (pp)
    n_gen: int         # generated tokens (tg)
    rounds: int        # alternating rounds per (system, threads)
    reps: int = 3      # timed pp + tg repetitions inside each child, after its warm-up

    @property
    def file(self) -> Path:
        return MODELS_DIR / (f"{self.key}-e{self.n_embd}-l{self.n_layer}-h{self.n_head}"
                             f"-kv{self.n_head_kv}-ff{self.n_ff}-v{self.n_vocab}.gguf")

    @property
    def n_ctx(self) -> int:
        """The context llama-bench gives itself (n_prompt + n_gen); the others use the same."""
        return self.n_prompt + self.n_gen

    @property
    def n_params(self) -> int:
        head_dim = self.n_embd // self.n_head
        per_layer = (2 * self.n_embd * self.n_embd + 2 * self.n_embd * head_dim * self.n_head_kv
                     + 3 * self.n_embd * self.n_ff + 2 * self.n_embd)
        return self.n_layer * per_layer + 2 * self.n_vocab * self.n_embd + self.n_embd


# small: the shape of llama2.c's stories15M (untied output, so ~24M parameters);
# large: the shape of SmolLM-360M (grouped-query attention, 15 heads over 5 KV heads).
_SMALL = dict(shape_of="stories15M (llama2.c)", n_embd=288, n_layer=6, n_head=6, n_head_kv=6,
              n_ff=768, n_vocab=32000, n_prompt=128, n_gen=64, rounds=7)
MODELS = {
    "small-q8_0": ModelSpec(key="small-q8_0", dtype="q8_0", **_SMALL),
    "small-f32": ModelSpec(key="small-f32", dtype="f32", **_SMALL),
    "large-q8_0": ModelSpec(key="large-q8_0", shape_of="SmolLM-360M", dtype="q8_0", n_embd=960,
                            n_layer=32, n_head=15, n_head_kv=5, n_ff=2560, n_vocab=49152,
                            n_prompt=64, n_gen=32, rounds=5),
}
N_BATCH = 512
LORA_RANK = 8
LORA_TARGETS = ("attn_q", "attn_v")
LORA_THREADS = 1  # one thread: LoRA costs are compared within one run, robust to a busy machine


def thread_counts() -> list[int]:
    """1 and all cores (just 1 on a single-core machine)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return sorted({1, max(1, n)})
