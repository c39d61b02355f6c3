"""llamart.gguf: headers of good files, and the precise refusal of bad ones.

Pure Python (numpy and gguf-py only in the tests that compare with gguf-py, skipped without
them): runs in Pyodide on fixtures made natively.  Broken variants are made here by editing
bytes of the fixture files.
"""

from __future__ import annotations

import os
import re
import struct
import tracemalloc

import pytest

from llamart.gguf import (
    GGML_TYPES,
    GGUFError,
    GGUFHeader,
    adapter_summary,
    model_summary,
    read_header,
    validate_adapter,
    validate_model,
)
from llamart.gguf.c_scan import c_string_scan
from llamart.gguf.spec import GGML_TYPE_COUNT
from llamart.testing import mutate

N_VOCAB = 1115  # llamart.testing.models.make_vocab()
F32, F16, Q8_0, Q4_K = 0, 1, 8, 12


def _bytes(path: str) -> bytearray:
    with open(path, "rb") as f:
        return bytearray(f.read())


def _write(tmp_path, name: str, data: bytes | bytearray) -> str:
    p = os.path.join(tmp_path, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def _reason(excinfo: pytest.ExceptionInfo[GGUFError]) -> str:
    return excinfo.value.reason


# ---- good files ----

@pytest.mark.parametrize("name", ["model_f32", "model_f16", "model_q8_0", "model_tiny_ctx",
                                  "model_no_template", "model_n32"])
def test_good_models_validate(fx: dict[str, str], name: str) -> None:
    h = validate_model(fx[name])
    assert h.version == 3
    assert h.architecture == "llama"
    assert h.kv["general.type"] == "model"
    assert len(h.kv["tokenizer.ggml.tokens"]) == N_VOCAB
    assert h.kv["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]
    assert h.kv["tokenizer.ggml.tokens"][3 + 0x0A] == "<0x0A>"
    assert h.file_size == os.path.getsize(fx[name])
    assert len(h.tensors) == 21  # embd + 2 layers x 9 + output_norm + output
    _assert_sizes_fit_the_writers_layout(h)


def _assert_sizes_fit_the_writers_layout(h: GGUFHeader) -> None:
    """Each tensor's size, as the reader computes it from its type table, is the room gguf-py's
    writer (which sizes data with its own table) left for it: up to the next tensor's data,
    padded to the alignment (the last one: up to the end of the file)."""
    ends = [t.offset for t in h.tensors[1:]] + [h.file_size]
    for t, end in zip(h.tensors, ends, strict=True):
        assert (t.offset - h.data_offset) % h.alignment == 0
        assert t.nbytes <= end - t.offset < t.nbytes + h.alignment, t.name


def test_header_fields_match_the_model_made(fx: dict[str, str]) -> None:
    h = read_header(fx["model_f32"])
    tm = h.tensor_map()
    assert tm["token_embd.weight"].shape == (64, N_VOCAB)  # ggml ne order
    assert tm["blk.1.ffn_down.weight"].shape == (128, 64)
    assert tm["blk.0.attn_norm.weight"].shape == (64,)
    assert tm["output.weight"].nbytes == 64 * N_VOCAB * 4
    assert h.kv["llama.context_length"] == 256
    assert h.kv["llama.embedding_length"] == 64
    assert h.kv["tokenizer.ggml.model"] == "llama"
    assert "<|im_start|>" in h.kv["tokenizer.chat_template"]
    assert h.kv["tokenizer.ggml.add_bos_token"] is True
    assert abs(h.kv["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-9
    assert read_header(fx["model_tiny_ctx"]).kv["llama.context_length"] == 64
    assert "tokenizer.chat_template" not in read_header(fx["model_no_template"]).kv


def test_tensor_types_per_dtype(fx: dict[str, str]) -> None:
    def q_type(name: str) -> int:
        return read_header(fx[name]).tensor_map()["blk.0.attn_q.weight"].ggml_type

    assert (q_type("model_f32"), q_type("model_f16"), q_type("model_q8_0")) == (F32, F16, Q8_0)
    norm = read_header(fx["model_q8_0"]).tensor_map()["blk.0.attn_norm.weight"]
    assert norm.ggml_type == F32
    q = read_header(fx["model_q8_0"]).tensor_map()["blk.0.attn_q.weight"]
    assert q.nbytes == 64 * 64 // 32 * 34


def test_model_summary(fx: dict[str, str]) -> None:
    s = model_summary(read_header(fx["model_f16"]))
    assert s["architecture"] == "llama"
    assert s["name"] == "llamart-test"
    assert s["n_tensors"] == 21
    assert s["types"] == {"F32": 5, "F16": 16}  # norms stay F32
    assert (s["context_length"], s["embedding_length"], s["block_count"]) == (256, 64, 2)
    assert s["file_type"] == 1
    per_layer = 4 * 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert s["n_params"] == 2 * N_VOCAB * 64 + 2 * per_layer + 64


# ---- against gguf-py (native: it needs numpy), an independent reader and type table ----

GOOD_FILES = ["model_f32", "model_f16", "model_q8_0", "model_tiny_ctx", "model_no_template",
              "model_n32", "lora_a", "lora_b", "lora_c", "lora_zero"]


@pytest.mark.parametrize("name", GOOD_FILES)
def test_header_matches_gguf_py_reader(fx: dict[str, str], name: str) -> None:
    gguf = pytest.importorskip("gguf", reason="gguf-py (and numpy) not installed here")
    ref = gguf.GGUFReader(fx[name])
    h = read_header(fx[name], scan=c_string_scan())
    assert [(t.name, t.shape, t.ggml_type, t.offset, t.nbytes) for t in h.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.data_offset),
         int(t.n_bytes)) for t in ref.tensors]
    assert (h.alignment, h.data_offset) == (ref.alignment, ref.data_offset)
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert h.version == ref.fields["GGUF.version"].contents()
    assert list(h.kv) == list(fields)
    assert h.kv == {k: f.contents() for k, f in fields.items()}
    assert h.kv_types == {k: (int(f.types[0]), int(f.types[1]) if len(f.types) > 1 else None)
                          for k, f in fields.items()}


# Where the installed gguf-py (0.19 on PyPI) lags the pinned llama.cpp: ggml type id ->
# (gguf-py's entry, ours).  Q8_1's block became two halves + 32 quants (ggml-common.h), which
# the pinned commit's own gguf-py says too; Q2_0 is newer than that release.
GGUF_PY_LAG: dict[int, tuple[tuple[str, int, int] | None, tuple[str, int, int]]] = {
    9: (("Q8_1", 32, 40), ("Q8_1", 32, 36)),
    42: (None, ("Q2_0", 64, 18)),
}


def _table(constants) -> dict[int, tuple[str, int, int]]:
    """A gguf-py constants module's type table in GGML_TYPES' form."""
    return {int(t): (t.name, *constants.GGML_QUANT_SIZES[t])
            for t in constants.GGMLQuantizationType if t in constants.GGML_QUANT_SIZES}


def test_type_table_matches_gguf_py() -> None:
    constants = pytest.importorskip("gguf.constants", reason="gguf-py not installed here")
    ref = _table(constants)
    differ = {k: (ref.get(k), GGML_TYPES.get(k)) for k in ref.keys() | GGML_TYPES.keys()
              if ref.get(k) != GGML_TYPES.get(k)}
    assert differ == {k: GGUF_PY_LAG[k] for k in differ if k in GGUF_PY_LAG}, differ
    assert len(GGML_TYPES) - len(differ) >= 30  # the rest is the same


def _pinned_source() -> str:
    """The llama.cpp tree the build uses (the pinned sdist extracted into .cache)."""
    try:
        from tools.llama_cpp_pin import source_dir

        path = str(source_dir())
    except OSError:  # no cmake/ (Pyodide)
        path = ""
    if not os.path.isdir(path):
        pytest.skip("the pinned llama.cpp source is not in .cache (the native build fetches it)")
    return path


def test_type_table_matches_the_pinned_llama_cpp() -> None:
    import importlib.util

    src = _pinned_source()
    spec = importlib.util.spec_from_file_location(
        "pinned_gguf_constants", os.path.join(src, "gguf-py", "gguf", "constants.py"))
    assert spec is not None and spec.loader is not None
    constants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(constants)  # stdlib only
    assert _table(constants) == GGML_TYPES
    with open(os.path.join(src, "ggml", "include", "ggml.h")) as f:
        count = re.search(r"GGML_TYPE_COUNT\s*=\s*(\d+)", f.read())
    assert count is not None and int(count[1]) == GGML_TYPE_COUNT


@pytest.mark.parametrize("name", ["lora_a", "lora_b", "lora_c", "lora_zero"])
def test_good_adapters_validate_against_their_base(fx: dict[str, str], name: str) -> None:
    base = validate_model(fx["model_f32"])
    h = validate_adapter(fx[name], base)
    assert h.kv["general.type"] == "adapter"
    assert validate_adapter(fx[name]).kv == h.kv  # also fine without a base
    validate_adapter(fx[name], validate_model(fx["model_f16"]))


def test_adapter_summary(fx: dict[str, str]) -> None:
    a = adapter_summary(read_header(fx["lora_a"]))
    assert a == {"alpha": 16.0, "rank": 8, "targets": ["attn_q", "attn_v"],
                 "task_name": "test-a", "architecture": "llama"}
    b = adapter_summary(read_header(fx["lora_b"]))
    assert (b["alpha"], b["rank"], b["task_name"]) == (0.0, 4, None)
    assert b["targets"] == ["ffn_up", "ffn_gate", "ffn_down"]
    c = adapter_summary(read_header(fx["lora_c"]))
    assert c["rank"] == 16
    assert c["targets"] == ["attn_q", "attn_k", "attn_v", "attn_output"]


def test_adapter_tensor_shapes(fx: dict[str, str]) -> None:
    tm = read_header(fx["lora_a"]).tensor_map()
    assert tm["blk.0.attn_q.weight.lora_a"].shape == (64, 8)  # ne: (n_in, rank)
    assert tm["blk.0.attn_q.weight.lora_b"].shape == (8, 64)  # ne: (rank, n_out)
    assert len(tm) == 2 * 2 * 2


# ---- bad fixture files ----

MODEL_ERRORS = {
    "bad_empty": "file is empty",
    "bad_garbage": "not a GGUF file (magic",
    "bad_truncated": "runs past end of file",
    "bad_lying_n_tensors": "header claims 1099511627776 tensors",
    "bad_lying_n_kv": "header claims 1099511627776 metadata keys",
    "bad_lying_string": "key 0 has length 1099511627776",
    "bad_lying_array": "array of 536870912 strings needs at least",
    "bad_lying_dims": "tensor 'token_embd.weight' data [",
    "lora_a": "is a LoRA adapter, not a model",
}


@pytest.mark.parametrize("name", sorted(MODEL_ERRORS))
def test_bad_model_files(fx: dict[str, str], name: str) -> None:
    with pytest.raises(GGUFError) as ei:
        validate_model(fx[name])
    assert MODEL_ERRORS[name] in ei.value.reason
    assert str(ei.value).startswith(fx[name] + ": ")  # names the file
    assert isinstance(ei.value, ValueError)


ADAPTER_ERRORS = {
    "bad_shape": "tensor 'blk.0.attn_q.weight' has incorrect shape: "
                 "adapter made for another base model?",
    "bad_arch": "adapter is for architecture 'gpt2' but the model is 'llama'",
    "bad_unknown_tensor": "LoRA tensor 'blk.2.attn_q.weight' does not exist in the base model",
    "bad_model_as_adapter": "is not a LoRA adapter (general.type is 'model'",
    "bad_missing_half": "LoRA tensor pair for 'blk.0.attn_q.weight' is missing its lora_b half",
    "model_f32": "is not a LoRA adapter (general.type is 'model'",
    "bad_empty": "file is empty",
    "bad_garbage": "not a GGUF file",
}


@pytest.mark.parametrize("name", sorted(ADAPTER_ERRORS))
def test_bad_adapter_files(fx: dict[str, str], name: str) -> None:
    base = read_header(fx["model_f32"])
    with pytest.raises(GGUFError) as ei:
        validate_adapter(fx[name], base)
    assert ADAPTER_ERRORS[name] in ei.value.reason
    assert fx[name] in str(ei.value)


def test_base_mismatch_needs_the_base(fx: dict[str, str]) -> None:
    for name in ("bad_shape", "bad_arch", "bad_unknown_tensor"):
        validate_adapter(fx[name])  # well-formed on its own
    with pytest.raises(GGUFError, match="has incorrect shape: adapter made for another base"):
        validate_adapter(fx["lora_a"], read_header(fx["model_n32"]))


def test_missing_file_is_file_not_found(tmp_path) -> None:
    missing = os.path.join(tmp_path, "nope.gguf")
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        read_header(missing)
    with pytest.raises(GGUFError, match="is a directory"):
        read_header(str(tmp_path))


@pytest.mark.parametrize("name", sorted(n for n in MODEL_ERRORS if n.startswith("bad_lying")))
def test_lying_headers_fail_without_big_allocations(fx: dict[str, str], name: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(GGUFError):
            read_header(fx[name])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the file is < 1 MB; a lie of 2**40 must not be believed


# ---- byte-level mutations of good files ----

def _mutated(fx: dict[str, str], tmp_path, edit, src: str = "model_f32") -> str:
    data = _bytes(fx[src])
    lay = mutate.layout(data)
    result = edit(data, lay)
    return _write(tmp_path, "m.gguf", data if result is None else result)


def _refused(path: str, adapter: bool = False, base=None) -> str:
    with pytest.raises(GGUFError) as ei:
        validate_adapter(path, base) if adapter else validate_model(path)
    return _reason(ei)


def test_bad_magic_and_versions(fx: dict[str, str], tmp_path) -> None:
    p = _mutated(fx, tmp_path, lambda d, _: d.__setitem__(slice(0, 4), b"GGML"))
    assert "not a GGUF file (magic b'GGML'" in _refused(p)
    for version, text in ((1, "version 1 is no longer supported"),
                          (4, "unsupported GGUF version 4"),
                          (0x03000000, "looks byte-swapped")):
        p = _mutated(fx, tmp_path, lambda d, _, v=version: mutate.put_u32(d, 4, v))
        assert text in _refused(p)


def test_tiny_files(tmp_path) -> None:
    assert "too short" in _refused(_write(tmp_path, "a.gguf", b"GG"))
    assert "version at offset 4 needs 4 bytes" in _refused(_write(tmp_path, "b.gguf", b"GGUF\3"))


def test_bad_tensor_infos(fx: dict[str, str], tmp_path) -> None:
    def set_u32(field):
        return lambda value: lambda d, lay: mutate.put_u32(d, field(lay), value)

    n_dims = set_u32(lambda lay: lay.tensor("blk.0.attn_q.weight").n_dims_at)
    gtype = set_u32(lambda lay: lay.tensor("blk.0.attn_q.weight").type_at)
    assert "'blk.0.attn_q.weight' has 5 dimensions (at most 4)" in _refused(
        _mutated(fx, tmp_path, n_dims(5)))
    assert "'blk.0.attn_q.weight' has unknown ggml type 99" in _refused(
        _mutated(fx, tmp_path, gtype(99)))
    assert "'blk.0.attn_q.weight' has removed ggml type 4" in _refused(
        _mutated(fx, tmp_path, gtype(4)))
    assert "type Q4_K has 64 elements per row, not a multiple of the block size 256" in _refused(
        _mutated(fx, tmp_path, gtype(Q4_K)))

    def dim(j: int, value: int):
        return lambda d, lay: mutate.put_u64(d, lay.tensor("blk.0.attn_q.weight").dims_at[j],
                                             value)
    assert "'blk.0.attn_q.weight' dimension 1 is negative (-1)" in _refused(
        _mutated(fx, tmp_path, dim(1, -1)))

    def huge(d, lay):
        for j in (0, 1):
            mutate.put_u64(d, lay.tensor("blk.0.attn_q.weight").dims_at[j], 1 << 62)
    assert "overflows int64" in _refused(_mutated(fx, tmp_path, huge))


def test_bad_tensor_offsets(fx: dict[str, str], tmp_path) -> None:
    def offset_of(name: str, d: bytearray, lay: mutate.Layout) -> tuple[int, int]:
        at = lay.tensor(name).offset_at
        return at, struct.unpack_from("<Q", d, at)[0]

    def misalign(d, lay):
        at, off = offset_of("blk.0.attn_k.weight", d, lay)
        mutate.put_u64(d, at, off + 4)
    assert "'blk.0.attn_k.weight' offset" in _refused(_mutated(fx, tmp_path, misalign))
    assert "not a multiple of the alignment 32" in _refused(_mutated(fx, tmp_path, misalign))

    def overlap(d, lay):
        _, off = offset_of("blk.0.attn_q.weight", d, lay)
        mutate.put_u64(d, lay.tensor("blk.0.attn_k.weight").offset_at, off)
    assert "overlap" in _refused(_mutated(fx, tmp_path, overlap))

    def swap(d, lay):  # same size: no overlap, but out of order
        a_at, a = offset_of("blk.0.attn_q.weight", d, lay)
        b_at, b = offset_of("blk.0.attn_k.weight", d, lay)
        mutate.put_u64(d, a_at, b)
        mutate.put_u64(d, b_at, a)
    assert "must be packed in header order" in _refused(_mutated(fx, tmp_path, swap))

    def beyond(d, lay):
        mutate.put_u64(d, lay.tensor("output.weight").offset_at, 1 << 40)
    reason = _refused(_mutated(fx, tmp_path, beyond))
    assert "tensor 'output.weight' data [" in reason
    assert f"runs past end of file (size {os.path.getsize(fx['model_f32'])})" in reason

    size = os.path.getsize(fx["model_f32"])
    p = _mutated(fx, tmp_path, lambda d, _: d[: size - 1])
    assert "tensor 'output.weight' data" in _refused(p)
    p = _mutated(fx, tmp_path, lambda d, lay: d[: lay.header_end + 1])
    assert "past end of file" in _refused(p)


def test_duplicates(fx: dict[str, str], tmp_path) -> None:
    p = _mutated(fx, tmp_path,
                 lambda d, lay: mutate.rename_key(d, lay.key("general.name"), "general.type"))
    assert "duplicate metadata key 'general.type'" in _refused(p)
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.rename_tensor(
        d, lay.tensor("blk.0.attn_k.weight"), "blk.0.attn_q.weight"))
    assert "duplicate tensor name 'blk.0.attn_q.weight'" in _refused(p)


def test_bad_metadata_types(fx: dict[str, str], tmp_path) -> None:
    p = _mutated(fx, tmp_path,
                 lambda d, lay: mutate.put_u32(d, lay.key("llama.block_count").type_at, 13))
    assert "key 'llama.block_count' has invalid GGUF type 13" in _refused(p)
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.put_u32(
        d, lay.key("tokenizer.ggml.scores").value_at, 9))
    assert "key 'tokenizer.ggml.scores' is an array of invalid GGUF type 9" in _refused(p)
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.put_u32(
        d, lay.key("tokenizer.ggml.token_type").value_at, 4))  # i32 -> u32, same size
    assert "'tokenizer.ggml.token_type' must be an array of i32" in _refused(p)

    def arch_not_string(d, lay):
        mutate.rename_key(d, lay.key("general.architecture"), "general.archXtecture")
    assert "'general.architecture' is missing" in _refused(_mutated(fx, tmp_path, arch_not_string))


def test_alignment_key(fx: dict[str, str], tmp_path) -> None:
    def alignment(value: int, vtype: int = 4):
        def edit(d, lay):
            k = lay.key("llama.block_count")
            mutate.rename_key(d, k, "general.alignment")
            mutate.put_u32(d, k.type_at, vtype)
            mutate.put_u32(d, k.value_at, value)
        return edit
    assert "general.alignment 3 is not a power of 2" in _refused(
        _mutated(fx, tmp_path, alignment(3)))
    assert "general.alignment 0 is not a power of 2" in _refused(
        _mutated(fx, tmp_path, alignment(0)))
    assert "'general.alignment' must be of type u32" in _refused(
        _mutated(fx, tmp_path, alignment(32, vtype=5)))
    h = read_header(_mutated(fx, tmp_path, alignment(32)))
    assert h.alignment == 32


def test_bad_adapter_mutations(fx: dict[str, str], tmp_path) -> None:
    base = read_header(fx["model_f32"])
    t_a = "blk.0.attn_q.weight.lora_a"
    t_b = "blk.0.attn_q.weight.lora_b"
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.rename_tensor(
        d, lay.tensor(t_a), t_a[:-1] + "x"), src="lora_a")
    assert "LoRA tensor 'blk.0.attn_q.weight.lora_x' has unexpected suffix" in _refused(p, True)

    def transpose_b(d, lay):
        dims = lay.tensor(t_b).dims_at
        mutate.put_u64(d, dims[0], 64)
        mutate.put_u64(d, dims[1], 8)
    p = _mutated(fx, tmp_path, transpose_b, src="lora_a")
    assert "'blk.0.attn_q.weight' has inconsistent rank" in _refused(p, True)
    assert "'blk.0.attn_q.weight' has incorrect shape" in _refused(p, True, base)

    p = _mutated(fx, tmp_path, lambda d, lay: mutate.put_u32(
        d, lay.key("adapter.lora.alpha").type_at, 5), src="lora_a")  # f32 -> i32
    assert "adapter.lora.alpha must be of type f32" in _refused(p, True)

    p = _mutated(fx, tmp_path, lambda d, lay: mutate.rename_key(
        d, lay.key("adapter.type"), "adapter.typo"), src="lora_a")
    assert "adapter.type is missing, expected 'lora'" in _refused(p, True)


def test_fuzzed_headers_raise_only_gguf_errors(fx: dict[str, str], tmp_path) -> None:
    from tools import fuzz

    cases = fuzz.make_cases(fuzz.fixture_sources(fx), str(tmp_path), 400, seed=99)
    base = read_header(fx["model_f32"])
    outcomes = {"ok": 0, "refused": 0}
    for case in cases:
        try:
            if case.kind == "model":
                validate_model(case.path)
            else:
                validate_adapter(case.path, base)
            outcomes["ok"] += 1
        except GGUFError as e:
            assert case.path in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200 and outcomes["ok"] > 10


def test_values_llama_cpp_would_abort_on(fx: dict[str, str], tmp_path) -> None:
    def u32_key(key: str, value: int):
        return lambda d, lay: mutate.put_u32(d, lay.key(key).value_at, value)

    def f32_key(key: str, value: float):
        return lambda d, lay: struct.pack_into("<f", d, lay.key(key).value_at, value)

    assert "'llama.block_count' is 0, must be in [1, 512]" in _refused(
        _mutated(fx, tmp_path, u32_key("llama.block_count", 0)))
    assert "'llama.block_count' is 513" in _refused(
        _mutated(fx, tmp_path, u32_key("llama.block_count", 513)))
    eps = "llama.attention.layer_norm_rms_epsilon"
    for bad in (-1.0, float("nan"), float("inf")):
        assert f"'{eps}' is {bad}, must be a finite number >= 0" in _refused(
            _mutated(fx, tmp_path, f32_key(eps, bad)))
    i32 = 26  # same size as F32: only the type is wrong
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.put_u32(
        d, lay.tensor("blk.0.attn_q.weight").type_at, i32))
    assert "'blk.0.attn_q.weight' has type I32, which llama.cpp cannot compute with" in _refused(p)
    p = _mutated(fx, tmp_path, lambda d, lay: mutate.put_u32(
        d, lay.tensor("blk.1.attn_v.weight.lora_b").type_at, i32), src="lora_a")
    assert "'blk.1.attn_v.weight.lora_b' has type I32" in _refused(p, True)


def test_duplicate_vocabulary_tokens(fx: dict[str, str], tmp_path) -> None:
    reason = _refused(_mutated(fx, tmp_path, _dup_token))
    assert "tokenizer.ggml.tokens has token" in reason and "twice" in reason


# ---- the string walk in the llamart C library against the pure-Python one ----

def _outcome(path: str, c_walk: bool) -> object:
    try:
        h = validate_model(path, scan=c_string_scan() if c_walk else None)
    except GGUFError as e:
        return ("refused", e.reason)
    return ("ok", h.kv, [(t.name, t.shape, t.ggml_type, t.offset) for t in h.tensors])


def _dup_token(d: bytearray, lay) -> None:
    """A word piece becomes a copy of another of the same length."""
    data = bytes(d)
    pos, texts = lay.key("tokenizer.ggml.tokens").count_at + 8, []
    for _ in range(400):
        n = struct.unpack_from("<Q", data, pos)[0]
        texts.append((pos, data[pos + 8:pos + 8 + n]))
        pos += 8 + n
    same = [(a, b) for a in texts[300:] for b in texts[300:]
            if a[0] < b[0] and len(a[1]) == len(b[1]) and a[1] != b[1]][0]
    (_, first), (at, _) = same
    d[at + 8:at + 8 + len(first)] = first


@pytest.mark.skipif(c_string_scan() is None,
                    reason="no llamart C library (native or WebAssembly) in this Python")
def test_c_string_walk_agrees_with_python(fx: dict[str, str], tmp_path) -> None:
    from tools import fuzz

    paths = [p for name, p in fx.items() if name.startswith(("model", "bad_"))]
    paths.append(_mutated(fx, tmp_path, _dup_token))
    paths += [c.path for c in fuzz.make_cases(fuzz.fixture_sources(fx), str(tmp_path), 300,
                                              seed=5) if c.kind == "model"]
    refused = 0
    for path in paths:
        in_c = _outcome(path, True)
        assert in_c == _outcome(path, False), path  # same header, or the same reason
        refused += in_c[0] == "refused"
    assert refused > 50 and len(paths) - refused > 10
    tokens = read_header(fx["model_f32"], scan=c_string_scan()).raw_kv["tokenizer.ggml.tokens"]
    assert type(tokens.data).__name__ == "_Packed" and tokens.unique_checked  # C walked it
