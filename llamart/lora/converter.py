"""Convert a PEFT LoRA folder to a llama.cpp GGUF adapter: numpy + safetensors + gguf only.

What llama.cpp's ``convert_lora_to_gguf.py`` does, without torch, transformers or the base's
Hugging Face config (everything is read from the base GGUF):

- names: ``base_model.model.`` is stripped and each module is mapped through gguf-py's
  tensor-name map for the base's ``general.architecture`` (``q_proj`` -> ``blk.N.attn_q``...);
- q/k rows: for a llama-architecture base, llama.cpp's converter permuted the rows of q and k
  into its rotary layout (``LlamaModel.permute`` with the head count, the KV-head count for k);
  a delta ``B @ A`` on q/k must be permuted the same way, which is a permutation of B's rows;
- token_embd: lora_a is stored transposed (llama.cpp gathers rows of it by token id);
- scale: llama.cpp multiplies ``B @ A`` by ``scale * alpha / rank`` with one alpha per file and
  each tensor's own rank. ``adapter.lora.alpha`` is written as the config's ``lora_alpha``
  (times sqrt(r) with rsLoRA), so a module at the config's ``r`` and ``lora_alpha`` keeps its B;
  a module whose PEFT scaling differs (``rank_pattern``, ``alpha_pattern``, rsLoRA with another
  rank) gets the ratio folded into B. Every module then has llama.cpp's effective scale equal
  to PEFT's ``alpha/r`` (or ``alpha/sqrt(r)``).

Everything is checked before anything is written, and the file appears only when complete
(written next to the target, then renamed).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import safetensors

from .base_model import BaseModel, read_base
from .peft_config import ConvertError, PeftConfig, read_config

WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
OUTTYPES = ("f32", "f16", "q8_0")
_FILE_TYPE = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
_PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B",
             ".lora_embedding_A": "A", ".lora_embedding_B": "B"}
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16}
# general.architecture values whose base GGUF llama.cpp's converter writes with q/k rows
# permuted (LlamaModel.undo_permute) and those it writes unchanged; a q/k LoRA on any other
# architecture is refused rather than guessed.
QK_PERMUTED = frozenset({"llama"})
QK_AS_IS = frozenset({"qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3"})


class ConvertWarning(UserWarning):
    """Something in a PEFT folder was not interpreted (the conversion went ahead)."""


@dataclass(frozen=True)
class LoraPair:
    """One module's PEFT tensors: A (r, n_in) and B (n_out, r); embeddings: A (r, n_vocab)."""

    module: str  # e.g. "model.layers.0.self_attn.q_proj"
    a: np.ndarray
    b: np.ndarray
    embedding: bool


def rope_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` on the first axis: per head, the rotate-half order
    (first half, second half) becomes interleaved pairs. ``n_head`` is the KV-head count for k."""
    n = rows.shape[0]
    return (rows.reshape(n_head, 2, n // n_head // 2, *rows.shape[1:])
            .swapaxes(1, 2).reshape(rows.shape))


def _decode(name: str, info: dict, path: str) -> np.ndarray:
    dtype, shape, data = info["dtype"], tuple(info["shape"]), info["data"]
    if dtype == "BF16":  # numpy has no bfloat16: its bits are a float32's upper half
        arr = (np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dtype in _DTYPES:
        arr = np.frombuffer(data, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    else:
        raise ConvertError(f"tensor '{name}' has dtype {dtype}; expected F32, F16 or BF16", path)
    arr = arr.reshape(shape).astype(np.float64)
    if arr.ndim != 2:
        raise ConvertError(f"tensor '{name}' must be 2-D, has shape {list(shape)}", path)
    if not np.isfinite(arr).all():
        raise ConvertError(f"tensor '{name}' has non-finite values", path)
    return arr


def weights_path(folder: str | os.PathLike[str]) -> str:
    """The folder's ``adapter_model.safetensors``; a pickle-only adapter is refused."""
    folder = os.fspath(folder)
    path = os.path.join(folder, WEIGHTS_NAME)
    if os.path.isfile(path):
        return path
    pickles = sorted(f for f in os.listdir(folder) if f.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ConvertError(f"refusing the pickle '{pickles[0]}': loading a pickle runs code "
                           f"from the file; save the adapter as {WEIGHTS_NAME} (PEFT's "
                           "save_pretrained does by default, safe_serialization=True)",
                           os.path.join(folder, pickles[0]))
    raise ConvertError(f"missing {WEIGHTS_NAME}", path)


def read_pairs(path: str) -> dict[str, LoraPair]:
    """Module name -> its LoRA pair, from a PEFT safetensors file."""
    try:
        with open(path, "rb") as f:
            entries = safetensors.deserialize(f.read())
    except OSError as e:
        raise ConvertError(f"cannot read ({e.strerror or e})", path) from e
    except Exception as e:  # SafetensorError: truncated, corrupt header...
        raise ConvertError(f"not a valid safetensors file ({e})", path) from e
    halves: dict[str, dict[str, np.ndarray]] = {}
    embedding: set[str] = set()
    for name, info in entries:
        suffix = next((s for s in _SUFFIXES if name.endswith(s)), None)
        if suffix is None:
            hint = (" (DoRA magnitude)" if "lora_magnitude" in name else
                    " (a trained bias)" if name.endswith(".bias") else "")
            raise ConvertError(f"unexpected tensor '{name}'{hint}: not a lora_A/lora_B "
                               "tensor", path)
        module = name[: -len(suffix)]
        module = module[len(_PREFIX):] if module.startswith(_PREFIX) else module
        if "embedding" in suffix:
            embedding.add(module)
        halves.setdefault(module, {})[_SUFFIXES[suffix]] = _decode(name, info, path)
    if not halves:
        raise ConvertError("holds no LoRA tensors", path)
    pairs = {}
    for module, h in sorted(halves.items()):
        if "A" not in h or "B" not in h:
            raise ConvertError(f"module '{module}' lacks its lora_{'A' if 'A' not in h else 'B'}"
                               " tensor", path)
        pairs[module] = LoraPair(module, h["A"], h["B"], module in embedding)
    return pairs


@dataclass(frozen=True)
class Plan:
    """What will be written: ``adapter.lora.alpha`` and (name, lora_a, lora_b) in numpy order."""

    alpha: float
    tensors: list[tuple[str, np.ndarray, np.ndarray]]


def _qk_rows(base: BaseModel, kind: gguf.MODEL_TENSOR, module: str) -> int | None:
    """Heads to permute B's rows by (None: leave them), for a q or k module."""
    if base.arch in QK_AS_IS:
        return None
    if base.arch not in QK_PERMUTED:
        raise ConvertError(f"'{module}': llamart does not know how llama.cpp lays out the q/k "
                           f"rows of architecture '{base.arch}' (known: "
                           f"{', '.join(sorted(QK_PERMUTED | QK_AS_IS))})", base.path)
    n = base.n_head if kind == gguf.MODEL_TENSOR.ATTN_Q else base.n_head_kv
    if not n:
        raise ConvertError(f"has no usable {base.arch}.attention.head_count", base.path)
    return n


def _max_block(modules: list[str]) -> int:
    ids = [int(n) for m in modules for n in re.findall(r"\.(\d+)\.", f".{m}.")]
    return max(ids, default=-1) + 1


def plan(cfg: PeftConfig, pairs: dict[str, LoraPair], base: BaseModel,
         weights: str) -> Plan:
    """Map, check and transform every pair; raises ConvertError before anything is written."""
    tmap = gguf.get_tensor_name_map(base.model_arch(),
                                    max(base.block_count, _max_block(list(pairs))))
    default_scaling = cfg.lora_alpha / (math.sqrt(cfg.r) if cfg.use_rslora else cfg.r)
    alpha = default_scaling * cfg.r  # makes llama.cpp's alpha/r equal PEFT's default scaling
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    for module, p in pairs.items():
        found = tmap.get_type_and_name(module + ".weight", try_suffixes=(".weight",))
        if found is None:
            raise ConvertError(f"module '{module}' has no GGUF tensor in gguf-py's map for "
                               f"architecture '{base.arch}'", weights)
        kind, name = found
        shape = base.shapes.get(name)
        if shape is None:
            if kind == gguf.MODEL_TENSOR.OUTPUT and "token_embd.weight" in base.shapes:
                raise ConvertError(f"'{module}' targets lm_head, but the base ties its output "
                                   "layer to token_embd.weight (it has no output.weight): "
                                   "llama.cpp cannot apply a LoRA to a tied lm_head", weights)
            raise ConvertError(f"module '{module}' -> '{name}': no such tensor in the base "
                               f"model {base.path} (adapter made for another base?)", weights)
        r = cfg.rank(module)
        a, b = p.a, p.b
        if a.shape[0] != r or b.shape[1] != r:
            raise ConvertError(f"module '{module}': lora_A {list(a.shape)} and lora_B "
                               f"{list(b.shape)} do not have the config's rank {r}", weights)
        # PEFT's delta: B @ A, or (B @ A).T for an embedding (A is (r, n_vocab) there)
        delta = [a.shape[1], b.shape[0]] if p.embedding else [b.shape[0], a.shape[1]]
        if delta != list(shape):
            raise ConvertError(f"module '{module}': the LoRA delta has shape {delta} (lora_A "
                               f"{list(a.shape)}, lora_B {list(b.shape)}) but the base's "
                               f"'{name}' has shape {list(shape)}", weights)
        llama_scaling = alpha / r if alpha else 1.0
        b = b * (cfg.scaling(module) / llama_scaling)
        if kind in (gguf.MODEL_TENSOR.ATTN_Q, gguf.MODEL_TENSOR.ATTN_K):
            n = _qk_rows(base, kind, module)
            if n is not None:
                b = rope_permute(b, n)
        if kind == gguf.MODEL_TENSOR.TOKEN_EMBD:
            a = a.T
        out.append((name, a, b))
    return Plan(float(alpha), out)


def _encode(data: np.ndarray, outtype: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType | None]:
    """The array to write and its raw type (None: the array's own dtype)."""
    data = np.ascontiguousarray(data, dtype=np.float32)
    if outtype == "f16" or (outtype == "q8_0" and data.shape[-1] % 32):
        return data.astype(np.float16), None  # q8_0 rows need 32 values (as llama.cpp: f16)
    if outtype == "q8_0":
        q = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, q), q
    return data, None


def _write(p: Plan, arch: str, out: str, outtype: str) -> None:
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".llamart-lora-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        w = gguf.GGUFWriter(tmp, arch)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, p.alpha)
        w.add_file_type(int(_FILE_TYPE[outtype]))
        for name, a, b in p.tensors:
            for suffix, data in ((".lora_a", a), (".lora_b", b)):
                arr, raw = _encode(data, outtype)
                w.add_tensor(name + suffix, arr, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def convert(peft_dir: str | os.PathLike[str], base_gguf: str | os.PathLike[str],
            out_path: str | os.PathLike[str], outtype: str = "f32",
            *, warn: Callable[[str], None] | None = None) -> Path:
    """Convert a PEFT LoRA folder into a GGUF adapter for ``base_gguf``; returns ``out_path``.

    ``outtype``: "f32", "f16" or "q8_0" (tensors whose rows are not a multiple of 32 values,
    such as a low-rank lora_b, stay f16 under q8_0, as llama.cpp's converter does). Keys of
    the config this converter does not know are reported through ``warn`` (default: a
    ConvertWarning). Raises ConvertError (an AdapterError) naming the file and the reason.
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    folder = os.fspath(peft_dir)
    if not os.path.isdir(folder):
        raise ConvertError("no such PEFT adapter folder", folder)
    out = os.fspath(out_path)
    if os.path.isdir(out):
        raise ConvertError("is a directory; give the adapter file to write", out)
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise ConvertError("the output folder does not exist", out)
    cfg = read_config(folder)
    weights = weights_path(folder)
    base = read_base(base_gguf)
    if cfg.unknown_keys:
        msg = (f"{cfg.path}: not interpreted (unknown to this converter): "
               f"{', '.join(cfg.unknown_keys)}")
        if warn is None:
            warnings.warn(msg, ConvertWarning, stacklevel=2)
        else:
            warn(msg)
    p = plan(cfg, read_pairs(weights), base, weights)
    _write(p, base.arch, out, outtype)
    return Path(out)
