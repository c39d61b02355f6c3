"""llama.cpp's rules for models and LoRA adapters, checked on a header before llama.cpp sees it.

llama.cpp asserts (aborts the process) on some values a well-formed GGUF file can hold, and
refuses others with a log line; these checks follow its model loader (src/llama-model*.cpp,
src/llama-vocab.cpp) and LoRA loader (src/llama-adapter.cpp) at the pinned commit, and refuse
such files with a GGUFError naming the key or tensor.
"""

from __future__ import annotations

import os

from .header import GGUFError, GGUFHeader, LazyArray, TensorInfo
from .reader import StringScan, read_header
from .spec import ARRAY, FLOAT32, GGML_TYPES, INT32, STRING, UINT32, VALUE_TYPE_NAMES

__all__ = ["COMPUTE_TYPES", "validate_adapter", "validate_model"]

# Types the CPU backend can multiply and add with (it has a vec_dot for them): model weights and
# LoRA tensors of any other type (I8..I64, F64, Q8_1, Q8_K) crash llama.cpp when evaluated.
COMPUTE_TYPES = frozenset(t for t, (n, _, _) in GGML_TYPES.items()
                          if n not in ("I8", "I16", "I32", "I64", "F64", "Q8_1", "Q8_K"))


def _str_key(h: GGUFHeader, key: str, *, required: bool) -> str | None:
    if key not in h.raw_kv:
        if required:
            raise GGUFError(f"metadata key '{key}' is missing", h.path)
        return None
    vtype = h.kv_types.get(key, (STRING, None))[0]
    if vtype != STRING:
        raise GGUFError(f"metadata key '{key}' must be a string, not "
                        f"{VALUE_TYPE_NAMES.get(vtype, vtype)}", h.path)
    return str(h.value(key))


# keys llama.cpp reads as arrays of one type (it refuses, or asserts, on any other type)
_ARRAY_KEYS = {
    "tokenizer.ggml.tokens": (STRING,),
    "tokenizer.ggml.merges": (STRING,),
    "tokenizer.ggml.scores": (FLOAT32, INT32),
    "tokenizer.ggml.token_type": (INT32,),
}


def validate_model(path: str | os.PathLike[str], *, allow_no_tensors: bool = False,
                   scan: StringScan | None = None) -> GGUFHeader:
    """Check that a file is a loadable GGUF model (not an adapter); return its header.
    ``scan``: the C string walk (see read_header)."""
    h = read_header(path, scan=scan)
    gtype = _str_key(h, "general.type", required=False)
    if gtype == "adapter":
        raise GGUFError("is a LoRA adapter, not a model (general.type is 'adapter')", h.path)
    if gtype not in (None, "model"):
        raise GGUFError(f"general.type is '{gtype}', expected 'model'", h.path)
    arch = _str_key(h, "general.architecture", required=True)
    if not arch:
        raise GGUFError("general.architecture is empty", h.path)
    for key, types in _ARRAY_KEYS.items():
        if key in h.raw_kv:
            vtype, itype = h.kv_types[key]
            if vtype != ARRAY or itype not in types:
                want = " or ".join(VALUE_TYPE_NAMES[t] for t in types)
                raise GGUFError(f"metadata key '{key}' must be an array of {want}", h.path)
    tokens = h.raw_kv.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (list, LazyArray)):
        _check_unique_tokens(h, tokens)
        for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            other = h.raw_kv.get(key)
            if isinstance(other, (list, LazyArray)) and len(other) < len(tokens):
                raise GGUFError(f"'{key}' has {len(other)} entries for {len(tokens)} tokens",
                                h.path)
    if not h.tensors and not allow_no_tensors:
        raise GGUFError("has no tensors (a vocab-only file?)", h.path)
    _check_compute_types(h)
    _check_hparams(h, arch)
    return h


def _check_unique_tokens(h: GGUFHeader, tokens: list[str] | LazyArray) -> None:
    """llama.cpp asserts (aborts) when two vocabulary entries have the same text."""
    if isinstance(tokens, LazyArray):
        if tokens.unique_checked:
            return
        # Distinct bytes decode to distinct texts unless one is undecodable, and texts with
        # U+FFFD are not compared below: all-distinct, non-empty bytes pass exactly when
        # the loop below would.
        unique: set[object] = set(tokens.raw())
        if len(unique) == len(tokens) and b"" not in unique:  # the usual case, checked in C
            return
        tokens = h.value("tokenizer.ggml.tokens")  # type: ignore[assignment]
    else:
        unique = set(tokens)
        if len(unique) == len(tokens) and "" not in unique:
            return
    seen: set[str] = set()
    for i, tok in enumerate(tokens):
        text = tok or f"[EMPTY_{i}]"  # llama.cpp's name for an empty token
        if text in seen and "\ufffd" not in text:  # undecodable bytes: cannot compare here
            raise GGUFError(f"tokenizer.ggml.tokens has token {i} '{text[:40]}' twice", h.path)
        seen.add(text)


LLAMA_MAX_LAYERS = 512
LLAMA_MAX_EXPERTS = 1024
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _check_hparams(h: GGUFHeader, arch: str) -> None:
    """Values that llama.cpp's generic hparams loader asserts on (an abort, not an error)."""

    def num(name: str) -> int | None:
        v = h.value(f"{arch}.{name}")
        if isinstance(v, list):
            v = max((x for x in v if isinstance(x, int)), default=0)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def bad(name: str, why: str) -> GGUFError:
        return GGUFError(f"metadata '{arch}.{name}' {why}", h.path)

    n_layer = num("block_count")
    if n_layer is not None and not 0 < n_layer <= LLAMA_MAX_LAYERS:
        raise bad("block_count", f"is {n_layer}, must be in [1, {LLAMA_MAX_LAYERS}]")
    nextn = num("nextn_predict_layers")
    if n_layer is not None and nextn is not None and nextn > n_layer:
        raise bad("nextn_predict_layers", f"is {nextn}, more than block_count {n_layer}")
    n_expert = num("expert_count") or 0
    used = num("expert_used_count") or 0
    groups = num("expert_group_count") or 0
    group_used = num("expert_group_used_count") or 0
    if n_expert > LLAMA_MAX_EXPERTS:
        raise bad("expert_count", f"is {n_expert}, above {LLAMA_MAX_EXPERTS}")
    if used > n_expert:
        raise bad("expert_used_count", f"is {used}, more than expert_count {n_expert}")
    if n_expert > 0:
        if used == 0:
            raise bad("expert_used_count", "is 0 in a model with experts")
        if groups >= n_expert:
            raise bad("expert_group_count", f"is {groups}, not below expert_count {n_expert}")
        if groups > 1 and (n_expert % groups or not 0 < group_used < groups):
            raise bad("expert_group_count", f"{groups} does not fit expert_count {n_expert} "
                      f"and expert_group_used_count {group_used}")
    elif groups:
        raise bad("expert_group_count", f"is {groups} in a model without experts")
    for key in list(h.raw_kv):  # norm epsilons: ggml asserts eps >= 0 when evaluating
        if key.startswith(f"{arch}.") and key.endswith(("epsilon", ".eps")):
            value = h.value(key)
            vals = value if isinstance(value, list) else [value]
            for v in vals:
                if isinstance(v, float) and not v >= 0.0 or v == float("inf"):
                    raise GGUFError(f"metadata '{key}' is {v}, must be a finite number >= 0",
                                    h.path)
    rope = h.value(f"{arch}.rope.scaling.type")
    if isinstance(rope, str) and rope not in _ROPE_SCALING_TYPES:
        raise bad("rope.scaling.type", f"is '{rope}', not one of {', '.join(_ROPE_SCALING_TYPES)}")


def _check_compute_types(h: GGUFHeader) -> None:
    if {t.ggml_type for t in h.tensors} <= COMPUTE_TYPES:
        return
    for t in h.tensors:
        if t.ggml_type not in COMPUTE_TYPES:
            raise GGUFError(f"tensor '{t.name}' has type {t.type_name}, which llama.cpp cannot "
                            f"compute with", h.path)


def _lora_pairs(h: GGUFHeader) -> dict[str, list[TensorInfo | None]]:
    """Base tensor name -> [lora_a, lora_b] in header order; unexpected names refused."""
    pairs: dict[str, list[TensorInfo | None]] = {}
    for t in h.tensors:
        if t.name.endswith(".lora_a"):
            pairs.setdefault(t.name[:-7], [None, None])[0] = t
        elif t.name.endswith(".lora_b"):
            pairs.setdefault(t.name[:-7], [None, None])[1] = t
        elif t.name.endswith("_norm.weight"):
            continue  # llama.cpp ignores these
        else:
            raise GGUFError(f"LoRA tensor '{t.name}' has unexpected suffix "
                            f"(expected .lora_a or .lora_b)", h.path)
    return pairs


def validate_adapter(path: str | os.PathLike[str], base: GGUFHeader | None = None, *,
                     scan: StringScan | None = None) -> GGUFHeader:
    """Check that a file is a LoRA adapter llama.cpp accepts (for ``base`` when given)."""
    h = read_header(path, scan=scan)
    gtype = _str_key(h, "general.type", required=False)
    if gtype != "adapter":
        raise GGUFError(f"is not a LoRA adapter (general.type is "
                        f"{'missing' if gtype is None else repr(gtype)}, expected 'adapter')",
                        h.path)
    arch = _str_key(h, "general.architecture", required=True)
    if base is not None and arch != base.architecture:
        raise GGUFError(f"adapter is for architecture '{arch}' but the model is "
                        f"'{base.architecture}'", h.path)
    atype = _str_key(h, "adapter.type", required=False)
    if atype != "lora":
        raise GGUFError(f"adapter.type is {'missing' if atype is None else repr(atype)}, "
                        f"expected 'lora'", h.path)
    if "adapter.lora.alpha" in h.raw_kv and h.kv_types["adapter.lora.alpha"][0] != FLOAT32:
        raise GGUFError("adapter.lora.alpha must be of type f32", h.path)
    key = "adapter.alora.invocation_tokens"
    if key in h.raw_kv and h.kv_types[key] != (ARRAY, UINT32):
        raise GGUFError(f"'{key}' must be an array of u32", h.path)
    pairs = _lora_pairs(h)
    _check_compute_types(h)
    if not pairs:
        raise GGUFError("adapter has no lora_a/lora_b tensors", h.path)
    base_tensors = base.tensor_map() if base is not None else {}
    for name in sorted(pairs):  # llama.cpp walks them in name order
        a, b = pairs[name]
        if a is None or b is None:
            half = "lora_a" if a is None else "lora_b"
            raise GGUFError(f"LoRA tensor pair for '{name}' is missing its {half} half", h.path)
        a_ne, b_ne = _ne2(a), _ne2(b)
        if a_ne is None or b_ne is None:
            t = a if a_ne is None else b
            raise GGUFError(f"LoRA tensor '{t.name}' must be 2-D, has shape {list(t.shape)}",
                            h.path)
        is_embd = name.endswith("token_embd.weight")
        if base is not None:
            w = base_tensors.get(name)
            if w is None:
                raise GGUFError(f"LoRA tensor '{name}' does not exist in the base model: "
                                f"adapter made for another base model?", h.path)
            w_ne = w.ne
            if is_embd:
                ok = w_ne[0] == b_ne[1] and w_ne[1] == a_ne[1]
            else:
                ok = w_ne[0] == a_ne[0] and w_ne[1] == b_ne[1]
            if not ok:
                raise GGUFError(
                    f"tensor '{name}' has incorrect shape: adapter made for another base model? "
                    f"(base {list(w.shape)}, lora_a {list(a.shape)}, lora_b {list(b.shape)})",
                    h.path)
        if not is_embd and a_ne[1] != b_ne[0]:
            raise GGUFError(f"LoRA tensor pair '{name}' has inconsistent rank: lora_a "
                            f"{list(a.shape)} vs lora_b {list(b.shape)} (lora_a not transposed?)",
                            h.path)
    return h


def _ne2(t: TensorInfo) -> tuple[int, int] | None:
    """(ne0, ne1) of a tensor that is 2-D in ggml's sense (ne2 == ne3 == 1), else None."""
    shape = t.shape
    if len(shape) == 2:
        return shape  # type: ignore[return-value]
    ne = t.ne
    return (ne[0], ne[1]) if ne[2] == 1 and ne[3] == 1 else None
