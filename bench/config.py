"""What the benchmark measures and where it keeps things: paths, the pinned llama.cpp version,
the models (generated shapes and the pinned real ones), model groups and token counts."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
# generated models, adapters, raw results (LLAMART_BENCH_CACHE: elsewhere)
BENCH_CACHE = Path(os.environ.get("LLAMART_BENCH_CACHE") or CACHE / "bench")
MODELS_DIR = BENCH_CACHE / "models"
RESULTS_JSON = BENCH_CACHE / "results.json"
# llama-cpp-python lives here only (LLAMART_BENCH_VENV: reuse one made elsewhere)
VENV = Path(os.environ.get("LLAMART_BENCH_VENV") or CACHE / "bench-venv")
# llama-bench and its libllama; LLAMART_BENCH_BUILD reuses a build made in another checkout
LLAMA_BENCH_BUILD = Path(os.environ.get("LLAMART_BENCH_BUILD") or REPO / "build" / "bench")
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
CHAT_PLOT = REPO / "docs" / "bench_chat.png"
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


@cache
def _real_model_facts(path: str) -> tuple[int, int, int]:
    """(parameters, vocabulary size, BOS id) of a model file, from its GGUF header."""
    from llamart.gguf import read_header

    h = read_header(path)
    n_params = sum(math.prod(t.shape) for t in h.tensors)
    tokens = h.value("tokenizer.ggml.tokens") or []
    return n_params, len(tokens), int(h.value("tokenizer.ggml.bos_token_id", 1))


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: generated (random weights in the shape of a real one, the shape fields
    set) or, with ``pinned``, a real model fetched by llamart.pinned_models."""

    key: str
    shape_of: str      # generated: the model whose shape it copies; real: the model itself
    dtype: str
    n_prompt: int      # prompt-processing tokens (pp)
    n_gen: int         # generated tokens (tg)
    rounds: int        # alternating rounds per (system, threads)
    reps: int = 3      # timed pp + tg repetitions inside each child, after its warm-up
    n_embd: int = 0
    n_layer: int = 0
    n_head: int = 0
    n_head_kv: int = 0
    n_ff: int = 0
    n_vocab: int = 0   # generated models (a real model's vocabulary comes from its file)
    pinned: str | None = None  # the llamart.pinned_models name of a real model

    @property
    def real(self) -> bool:
        return self.pinned is not None

    @property
    def file(self) -> Path:
        if self.pinned is not None:
            from llamart.pinned_models import PINS, model_dir

            return model_dir() / PINS[self.pinned].filename
        return MODELS_DIR / (f"{self.key}-e{self.n_embd}-l{self.n_layer}-h{self.n_head}"
                             f"-kv{self.n_head_kv}-ff{self.n_ff}-v{self.n_vocab}.gguf")

    @property
    def n_ctx(self) -> int:
        """The context llama-bench gives itself (n_prompt + n_gen); the others use the same."""
        return self.n_prompt + self.n_gen

    @property
    def vocab_size(self) -> int:
        return _real_model_facts(str(self.file))[1] if self.real else self.n_vocab

    @property
    def bos(self) -> int:
        """The first token of every prompt (the model's BOS; 1 in the generated models)."""
        return _real_model_facts(str(self.file))[2] if self.real else 1

    @property
    def n_params(self) -> int:
        if self.real:
            return _real_model_facts(str(self.file))[0]
        head_dim = self.n_embd // self.n_head
        per_layer = (2 * self.n_embd * self.n_embd + 2 * self.n_embd * head_dim * self.n_head_kv
                     + 3 * self.n_embd * self.n_ff + 2 * self.n_embd)
        return self.n_layer * per_layer + 2 * self.n_vocab * self.n_embd + self.n_embd


# small: the shape of llama2.c's stories15M (untied output, so ~24M parameters);
# large: the shape of SmolLM-360M (grouped-query attention, 15 heads over 5 KV heads).
# The real models (pp128 / tg64, as llama-bench's defaults) replace large-q8_0 in the default
# run: it stood in for a real model of that size; it stays selectable by name.
_SMALL = dict(shape_of="stories15M (llama2.c)", n_embd=288, n_layer=6, n_head=6, n_head_kv=6,
              n_ff=768, n_vocab=32000, n_prompt=128, n_gen=64, rounds=7)
MODELS = {
    "small-q8_0": ModelSpec(key="small-q8_0", dtype="q8_0", **_SMALL),
    "small-f32": ModelSpec(key="small-f32", dtype="f32", **_SMALL),
    "large-q8_0": ModelSpec(key="large-q8_0", shape_of="SmolLM-360M", dtype="q8_0", n_embd=960,
                            n_layer=32, n_head=15, n_head_kv=5, n_ff=2560, n_vocab=49152,
                            n_prompt=64, n_gen=32, rounds=5),
    "smollm2-q4_1": ModelSpec(key="smollm2-q4_1", shape_of="SmolLM2-135M-Instruct",
                              dtype="q4_1", n_prompt=128, n_gen=64, rounds=5, pinned="smollm2"),
    "gemma3-q4_k_m": ModelSpec(key="gemma3-q4_k_m", shape_of="Gemma 3 270M (base)",
                               dtype="q4_k_m", n_prompt=128, n_gen=64, rounds=5,
                               pinned="gemma3-270m"),
}
MODEL_GROUPS = {
    "synthetic": ("small-q8_0", "small-f32"),
    "real": ("smollm2-q4_1", "gemma3-q4_k_m"),
}
MODEL_GROUPS["all"] = MODEL_GROUPS["synthetic"] + MODEL_GROUPS["real"]
LORA_MODELS = ("small-q8_0", "large-q8_0", "smollm2-q4_1", "gemma3-q4_k_m")
WASM_MODELS = ("small-q8_0", "small-f32", "smollm2-q4_1", "gemma3-q4_k_m")
GRAMMAR_MODEL = "smollm2-q4_1"  # the grammar cost per token (llamart_job.grammar), native


def select_models(text: str) -> list[str]:
    """Model keys from a comma-separated list of keys and group names (synthetic, real, all),
    in order, each once. Raises ValueError naming an unknown entry."""
    keys: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item in MODEL_GROUPS:
            keys += MODEL_GROUPS[item]
        elif item in MODELS:
            keys.append(item)
        else:
            raise ValueError(f"unknown model {item!r}; choose from the groups "
                             f"{', '.join(MODEL_GROUPS)} or the models {', '.join(MODELS)}")
    return list(dict.fromkeys(keys))


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
