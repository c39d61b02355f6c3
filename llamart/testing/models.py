"""Make tiny llama-architecture GGUF models, LoRA adapters and broken files (native only).

Uses numpy and the ``gguf`` package.  Weights are small seeded random numbers, so a model made
twice with the same arguments is byte-identical.  The tokenizer is a SentencePiece-style
("llama") vocabulary: ``<unk> <s> </s>``, 256 ``<0xNN>`` byte tokens, ChatML control tokens and
a few hundred word pieces with scores, so English text tokenizes into sensible pieces.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gguf
import numpy as np

from ..gguf import read_header

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORDS = """
the of and to in a is that for it as was with be by on not he i this are or his from at which
but have an they you were her she there one all we their has been would will if more when
no out so up said what its about into than them can only other new some time could these two
may then do first any my now such like our over man me even most made after also did many
before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between
both life being under never day same another know while last might us great old year off come
since against go came right used take three hello hi help chat model llama art python browser
web run test data file load text token word story once upon cat dog house tree water fire
sun moon star light dark red blue green small big happy sad yes thank please question answer
write read code bug fix fast slow good bad think say tell ask want need love like play game
""".split()
_PUNCT = list(".,!?;:'\"()-[]{}<>/\\@#$%^&*+=_~`|") + ["\n"]
BYTE_BASE = 3  # <0x00> is token 3, as in llama/SentencePiece vocabularies


def make_vocab() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, token types) of the test tokenizer."""
    tt = gguf.TokenType
    tokens = ["<unk>", "<s>", "</s>"]
    scores = [0.0, 0.0, 0.0]
    types = [tt.UNKNOWN, tt.CONTROL, tt.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(tt.BYTE)
    for special in ("<|im_start|>", "<|im_end|>"):
        tokens.append(special)
        scores.append(0.0)
        types.append(tt.CONTROL)
    seen = set(tokens)
    pieces: list[str] = []
    chars = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    chars += [chr(c) for c in range(ord("A"), ord("Z") + 1)] + list("0123456789") + _PUNCT
    for c in chars:
        pieces.append(c)
    words = _WORDS + [w.capitalize() for w in _WORDS[:120]] + ["I", "Hello", "The"]
    for w in words:
        full = "\u2581" + w
        for n in range(2, len(full) + 1):  # every prefix, so SPM merges can reach the word
            pieces.append(full[:n])
    for i, p in enumerate(pieces):
        if p in seen:
            continue
        seen.add(p)
        tokens.append(p)
        # longer pieces win merges; earlier (more common) words win ties
        scores.append(float(len(p)) * 10.0 - i * 0.001 if len(p) > 1 else -100.0 - i * 0.001)
        types.append(tt.NORMAL)
    return tokens, scores, [int(t) for t in types]


def _weight_shapes(n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int,
                   n_vocab: int) -> dict[str, tuple[int, ...]]:
    """Tensor name -> numpy shape (n_out, n_in) of a llama model."""
    head_dim = n_embd // n_head
    n_kv = head_dim * n_head_kv
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (n_vocab, n_embd)}
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes[p + "attn_norm.weight"] = (n_embd,)
        shapes[p + "attn_q.weight"] = (n_embd, n_embd)
        shapes[p + "attn_k.weight"] = (n_kv, n_embd)
        shapes[p + "attn_v.weight"] = (n_kv, n_embd)
        shapes[p + "attn_output.weight"] = (n_embd, n_embd)
        shapes[p + "ffn_norm.weight"] = (n_embd,)
        shapes[p + "ffn_gate.weight"] = (n_ff, n_embd)
        shapes[p + "ffn_up.weight"] = (n_ff, n_embd)
        shapes[p + "ffn_down.weight"] = (n_embd, n_ff)
    shapes["output_norm.weight"] = (n_embd,)
    shapes["output.weight"] = (n_vocab, n_embd)
    return shapes


_FILE_TYPES = {"f32": 0, "f16": 1, "q4_1": 3, "q8_0": 7}


def make_model(path: str | os.PathLike[str], *, n_embd: int = 64, n_layer: int = 2,
               n_head: int = 4, n_head_kv: int = 4, n_ff: int = 128, n_ctx: int = 256,
               dtype: str = "f32", seed: int = 0, vocab: tuple | None = None,
               arch: str = "llama", name: str = "llamart-test",
               chat_template: str | None = CHATML_TEMPLATE,
               extra_kv: Mapping[str, Any] | None = None,
               tensors: Mapping[str, np.ndarray] | None = None, drop: Sequence[str] = ()) -> str:
    """Write a random llama-architecture model; returns the path.

    ``dtype`` is "f32", "f16", "q4_1" or "q8_0" for the matrices (norms stay F32). ``vocab`` is
    (tokens, scores, types) to replace the test tokenizer. ``tensors`` (GGUF name -> float32
    array of the numpy shape) replaces random weights; ``drop`` names tensors left out
    (``("output.weight",)``: an output layer tied to token_embd, as llama.cpp reads it).
    """
    if dtype not in _FILE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(_FILE_TYPES)}")
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must divide by n_head, and n_head by n_head_kv")
    tokens, scores, types = vocab if vocab is not None else make_vocab()
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(os.fspath(path), arch)
    w.add_name(name)
    w.add_type("model")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_file_type(_FILE_TYPES[dtype])
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    for k, v in (extra_kv or {}).items():
        _add_kv(w, k, v)
    for tname, shape in _weight_shapes(n_embd, n_layer, n_head, n_head_kv, n_ff,
                                       len(tokens)).items():
        if tname in drop:
            continue
        if tensors is not None and tname in tensors:
            given = np.asarray(tensors[tname], dtype=np.float32)
            if given.shape != shape:
                raise ValueError(f"{tname}: shape {given.shape}, expected {shape}")
            if len(shape) == 1:
                w.add_tensor(tname, given)
            else:
                _add_matrix(w, tname, given, dtype)
            continue
        if len(shape) == 1:
            data = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            w.add_tensor(tname, data)
            continue
        std = 1.0 if tname == "token_embd.weight" else 1.0 / np.sqrt(shape[1])
        data = (std * rng.standard_normal(shape)).astype(np.float32)
        _add_matrix(w, tname, data, dtype)
    _finish(w)
    return os.fspath(path)


def _add_matrix(w: gguf.GGUFWriter, name: str, data: np.ndarray, dtype: str) -> None:
    if dtype == "f16":
        w.add_tensor(name, data.astype(np.float16))
    elif dtype in ("q4_1", "q8_0"):
        kind = gguf.GGMLQuantizationType[dtype.upper()]
        w.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    else:
        w.add_tensor(name, data)


def _add_kv(w: gguf.GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, list(value))


def _finish(w: gguf.GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


BASE_DEFAULTS = {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_head_kv": 4, "n_ff": 128}


def _base_shapes(base: Mapping[str, Any] | str | os.PathLike[str] | None
                 ) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(architecture, tensor name -> numpy shape) of a base model given as params or a file."""
    if isinstance(base, (str, os.PathLike)):
        h = read_header(base)
        return h.architecture or "llama", {t.name: tuple(reversed(t.shape)) for t in h.tensors}
    p = dict(BASE_DEFAULTS)
    p.update(base or {})
    arch = p.pop("arch", "llama")
    n_vocab = p.pop("n_vocab", len(make_vocab()[0]))
    shapes = _weight_shapes(p["n_embd"], p["n_layer"], p["n_head"], p["n_head_kv"], p["n_ff"],
                            n_vocab)
    return arch, shapes


def make_adapter(path: str | os.PathLike[str], *,
                 base: Mapping[str, Any] | str | os.PathLike[str] | None = None,
                 rank: int = 8, alpha: float = 16.0,
                 targets: Sequence[str] = ("attn_q", "attn_v"), seed: int = 1,
                 scale_of_weights: float = 0.5, zero_b: bool = False,
                 arch: str | None = None, general_type: str = "adapter",
                 adapter_type: str = "lora", task_name: str | None = None,
                 layers: Iterable[int] | None = None, drop: Sequence[str] = (),
                 alora_tokens: Sequence[int] | None = None) -> str:
    """Write a LoRA adapter for ``base`` (make_model params, or a model file); returns the path.

    ``targets`` are short names ("attn_q", "ffn_up", ...) applied in every layer (or only
    ``layers``).  lora_a has numpy shape (rank, n_in), lora_b (n_out, rank); B is non-zero
    unless ``zero_b``, so the adapter visibly changes logits.  ``arch``, ``general_type``,
    ``adapter_type`` and ``drop`` (tensor names left out) exist to make broken adapters.
    ``alora_tokens`` makes an activated LoRA (``adapter.alora.invocation_tokens``, u32).
    """
    base_arch, shapes = _base_shapes(base)
    n_layer = 1 + max(int(n.split(".")[1]) for n in shapes if n.startswith("blk."))
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(os.fspath(path), arch or base_arch)
    w.add_type(general_type)
    w.add_string(gguf.Keys.Adapter.TYPE, adapter_type)
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    if task_name is not None:
        w.add_string(gguf.Keys.Adapter.LORA_TASK_NAME, task_name)
    if alora_tokens is not None:
        w.add_key_value(gguf.Keys.Adapter.ALORA_INVOCATION_TOKENS, list(alora_tokens),
                        gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT32)
    for i in (range(n_layer) if layers is None else layers):
        for t in targets:
            bname = f"blk.{i}.{t}.weight"
            ref = f"blk.0.{t}.weight"
            if ref not in shapes:
                raise ValueError(f"unknown LoRA target {t!r}")
            n_out, n_in = shapes[bname] if bname in shapes else shapes[ref]
            a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float32)
            b = (scale_of_weights / np.sqrt(rank) * rng.standard_normal((n_out, rank)))
            b = (0.0 * b if zero_b else b).astype(np.float32)
            for suffix, data in ((".lora_a", a), (".lora_b", b)):
                if bname + suffix not in drop:
                    w.add_tensor(bname + suffix, data)
    _finish(w)
    return os.fspath(path)


# ---- broken files: each returns its path ----

def make_bad_shape_adapter(path: str | os.PathLike[str]) -> str:
    """An adapter made for a 32-wide base, to be used against the default 64-wide one."""
    return make_adapter(path, base={"n_embd": 32, "n_ff": 64}, rank=4)


def make_bad_arch_adapter(path: str | os.PathLike[str]) -> str:
    """A well-formed adapter whose general.architecture is not the base's ('gpt2')."""
    return make_adapter(path, arch="gpt2", rank=4)


def make_unknown_tensor_adapter(path: str | os.PathLike[str], n_layer: int = 2) -> str:
    """An adapter targeting layer ``n_layer`` (one past the default base's last layer)."""
    return make_adapter(path, rank=4, targets=("attn_q",), layers=[n_layer])


def make_model_typed_adapter(path: str | os.PathLike[str]) -> str:
    """LoRA tensors, but general.type says 'model'."""
    return make_adapter(path, rank=4, general_type="model")


def make_missing_half_adapter(path: str | os.PathLike[str]) -> str:
    """An adapter whose blk.0.attn_q.weight pair lacks its lora_b half."""
    return make_adapter(path, rank=4, targets=("attn_q",), drop=("blk.0.attn_q.weight.lora_b",))


def make_garbage(path: str | os.PathLike[str], size: int = 4096, seed: int = 7) -> str:
    """Random bytes (not GGUF)."""
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def make_empty(path: str | os.PathLike[str]) -> str:
    open(path, "wb").close()
    return os.fspath(path)


def make_truncated(path: str | os.PathLike[str], model: str | os.PathLike[str],
                   keep: float = 0.5) -> str:
    """The first ``keep`` fraction of a valid model file."""
    with open(model, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return os.fspath(path)
