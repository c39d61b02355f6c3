"""``llamart lora convert``: PEFT folders -> GGUF adapters, against an independent reference.

The reference is a tiny llama in Hugging Face convention (un-permuted q/k, rotate-half RoPE,
4 heads over 2 KV heads, 2 layers) with a numpy forward pass (tests.support.hf_llama); its
GGUF is written the way llama.cpp's converter writes one. A converted adapter applied by
llama.cpp with ``set_lora(scale)`` must give the reference's logits on PEFT's merged weights
``W + scale * scaling * B @ A``. Native only: needs numpy, safetensors, gguf and llama.cpp.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from typing import Any

import pytest

if sys.platform == "emscripten":
    pytest.skip("needs numpy, safetensors and the native backend", allow_module_level=True)

import gguf  # noqa: E402
import numpy as np  # noqa: E402

from llamart import AdapterError, Engine  # noqa: E402
from llamart.cli import main  # noqa: E402
from llamart.gguf import read_header, validate_adapter, validate_model  # noqa: E402
from llamart.lora import check_applicable, convert, converter  # noqa: E402
from llamart.lora.converter import ConvertWarning  # noqa: E402
from llamart.lora.peft_config import ConvertError  # noqa: E402
from llamart.testing.models import make_adapter  # noqa: E402
from tests.support import hf_llama as H  # noqa: E402

TOKENS = [[1, 300, 420, 500, 333, 290, 610, 450], [1, 270, 281, 292, 303, 314]]
# F32 base and adapter: max |diff| relative to max |logit|. llama.cpp keeps the KV cache in F16,
# so even the base (or the merged weights written as a base) is 3e-4..1.1e-3 off the float64
# reference; a wrong permutation or scale is off by more than 30 times this.
TOL = 2e-3


@pytest.fixture(scope="module")
def model() -> H.HFLlama:
    return H.make_hf_llama(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128, seed=3)


@pytest.fixture(scope="module")
def base(model: H.HFLlama, tmp_path_factory: pytest.TempPathFactory) -> str:
    return H.write_gguf(model, tmp_path_factory.mktemp("base") / "base-f32.gguf")


@pytest.fixture
def eng(base: str):
    e = Engine("native")
    e.load_model(base, n_ctx=64, n_threads=1)
    try:
        yield e
    finally:
        e.dispose()


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _worst(e: Engine, m: H.HFLlama, deltas: dict[str, np.ndarray] | None) -> float:
    """Worst relative error of llama.cpp's last-token logits against the reference."""
    return max(_rel(np.asarray(e.logits(t), dtype=np.float64), H.forward(m, t, deltas)[-1])
               for t in TOKENS)


def _effect(m: H.HFLlama, deltas: dict[str, np.ndarray]) -> float:
    """How far the adapter moves the reference's logits (so a match is not trivial)."""
    return min(_rel(H.forward(m, t)[-1], H.forward(m, t, deltas)[-1]) for t in TOKENS)


def test_base_matches_reference_only_with_permuted_qk(eng: Engine, model: H.HFLlama,
                                                     tmp_path) -> None:
    assert _worst(eng, model, None) < TOL
    wrong = H.write_gguf(model, tmp_path / "unpermuted.gguf", permute_qk=False)
    eng.load_model(wrong, n_ctx=64, n_threads=1)
    assert _worst(eng, model, None) > 30 * TOL  # the reference sees the rotary layout


def test_all_projections_at_several_scales(eng: Engine, model: H.HFLlama, base: str,
                                           tmp_path) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model), r=8, lora_alpha=16)
    assert len(pairs) == 14  # q, k, v, o, gate, up, down in both layers
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf")
    assert out == tmp_path / "adapter.gguf"
    for scale in (0.5, 1.0, 1.5):
        assert eng.set_lora(out, scale)
        deltas = H.peft_deltas(pairs, scale)
        assert _effect(model, deltas) > 0.2
        assert _worst(eng, model, deltas) < TOL, scale
    eng.clear_loras()
    assert _worst(eng, model, None) < TOL


@pytest.mark.parametrize("rslora,ranks,alphas", [
    (True, {}, {}),
    (False, {"q_proj": 4, "model.layers.1.mlp.down_proj": 2}, {"v_proj": 40.0, "o_proj": 3.0}),
    (True, {"k_proj": 16, "model.layers.0.mlp.up_proj": 4}, {"gate_proj": 5.0}),
], ids=["rslora", "patterns", "rslora+patterns"])
def test_rslora_and_per_module_rank_alpha(eng: Engine, model: H.HFLlama, base: str, tmp_path,
                                          rslora: bool, ranks: dict, alphas: dict) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model), r=8, lora_alpha=12,
                        ranks=ranks, alphas=alphas, use_rslora=rslora, b_std=0.1)
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf")
    header = read_header(out)
    assert header.kv["adapter.lora.alpha"] == pytest.approx(12 * (math.sqrt(8) if rslora else 1))
    for scale in (0.5, 1.5):
        eng.set_lora(out, scale)
        deltas = H.peft_deltas(pairs, scale, rslora)
        assert _effect(model, deltas) > 0.1
        assert _worst(eng, model, deltas) < TOL


def test_embeddings_and_lm_head(eng: Engine, model: H.HFLlama, base: str, tmp_path) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model),
                        targets=("embed_tokens", "lm_head", "k_proj"), r=4, lora_alpha=8)
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf")
    shapes = {t.name: t.shape for t in read_header(out).tensors}
    assert list(shapes["token_embd.weight.lora_a"]) == [4, len(model.weights["lm_head.weight"])]
    eng.set_lora(out, 1.0)
    deltas = H.peft_deltas(pairs, 1.0)
    assert _effect(model, deltas) > 0.1
    assert _worst(eng, model, deltas) < TOL


def test_unpermuted_conversion_would_fail(eng: Engine, model: H.HFLlama, base: str, tmp_path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model), targets=("q_proj", "k_proj"))
    deltas = H.peft_deltas(pairs, 1.0)
    monkeypatch.setattr(converter, "rope_permute", lambda rows, n_head: rows)
    wrong = convert(tmp_path / "peft", base, tmp_path / "wrong.gguf")
    monkeypatch.undo()
    right = convert(tmp_path / "peft", base, tmp_path / "right.gguf")
    eng.set_lora(wrong, 1.0)
    assert _worst(eng, model, deltas) > 30 * TOL
    eng.clear_loras()
    eng.set_lora(right, 1.0)
    assert _worst(eng, model, deltas) < TOL


@pytest.mark.parametrize("outtype,tol,types", [
    ("f16", 5e-3, {"F16"}),
    ("q8_0", 2e-2, {"Q8_0", "F16"}),  # lora_b rows of 8 values cannot be Q8_0 (32): F16
])
def test_outtypes(eng: Engine, model: H.HFLlama, base: str, tmp_path, outtype: str, tol: float,
                  types: set[str]) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model), r=8)
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf", outtype=outtype)
    assert {t.tensor_type.name for t in gguf.GGUFReader(out).tensors} == types
    eng.set_lora(out, 1.0)
    deltas = H.peft_deltas(pairs, 1.0)
    err = _worst(eng, model, deltas)
    assert err < tol
    assert _effect(model, deltas) > 20 * tol


def test_written_header_fits_base(base: str, model: H.HFLlama, tmp_path) -> None:
    H.make_peft(tmp_path / "peft", H.module_shapes(model), targets=("v_proj",), r=2,
                lora_alpha=5)
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf")
    h = validate_adapter(out, validate_model(base))
    assert h.kv["general.type"] == "adapter" and h.kv["adapter.type"] == "lora"
    assert h.kv["general.architecture"] == "llama"
    assert h.kv["adapter.lora.alpha"] == 5.0
    assert sorted(t.name for t in h.tensors) == [
        f"blk.{i}.attn_v.weight.lora_{x}" for i in (0, 1) for x in "ab"]
    assert sorted(os.listdir(tmp_path)) == ["adapter.gguf", "peft"]  # no temporary file left


@pytest.mark.parametrize("dtype", [np.float16, "bf16"], ids=["f16", "bf16"])
def test_half_precision_peft_tensors(eng: Engine, model: H.HFLlama, base: str, tmp_path,
                                     dtype: object) -> None:
    pairs = H.make_peft(tmp_path / "peft", H.module_shapes(model), dtype=dtype)
    out = convert(tmp_path / "peft", base, tmp_path / "adapter.gguf")
    eng.set_lora(out, 1.0)
    deltas = H.peft_deltas(pairs, 1.0)
    assert _effect(model, deltas) > 0.2
    assert _worst(eng, model, deltas) < TOL


# ---- bad PEFT folders: a clear error naming the file, nothing written ----

def _peft(tmp_path, model: H.HFLlama, **kw) -> str:
    folder = tmp_path / "peft"
    H.make_peft(folder, H.module_shapes(model), targets=kw.pop("targets", ("q_proj", "v_proj")),
                r=4, **kw)
    return str(folder)


def _refused(folder: str, base: str, out, match: str, names: str) -> ConvertError:
    """Convert must raise naming ``names`` and ``match``, leaving ``out``'s folder as it was."""
    before = sorted(os.listdir(os.path.dirname(out)))
    with pytest.raises(ConvertError, match=match) as info:
        convert(folder, base, out)
    assert names in str(info.value) and info.value.path is not None
    assert isinstance(info.value, AdapterError)
    assert sorted(os.listdir(os.path.dirname(out))) == before
    return info.value


def _edit_config(folder: str, **changes) -> None:
    path = os.path.join(folder, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(path, "w") as f:
        json.dump(cfg, f)


@pytest.fixture
def out(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("out") / "adapter.gguf"


def test_missing_files(tmp_path, model: H.HFLlama, base: str, out) -> None:
    _refused(str(tmp_path / "nope"), base, out, "no such PEFT adapter folder", "nope")
    folder = _peft(tmp_path, model)
    os.rename(os.path.join(folder, "adapter_model.safetensors"), tmp_path / "moved")
    _refused(folder, base, out, "missing adapter_model.safetensors",
             "adapter_model.safetensors")
    os.remove(os.path.join(folder, "adapter_config.json"))
    _refused(folder, base, out, "missing adapter_config.json", "adapter_config.json")
    _refused(_peft(tmp_path / "b", model), str(tmp_path / "no-base.gguf"), out,
             "no such base model", "no-base.gguf")


def test_pickle_adapter_refused(tmp_path, model: H.HFLlama, base: str, out) -> None:
    folder = _peft(tmp_path, model)
    os.remove(os.path.join(folder, "adapter_model.safetensors"))
    with open(os.path.join(folder, "adapter_model.bin"), "wb") as f:
        f.write(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")  # never unpickled
    _refused(folder, base, out, "pickle.*runs code", "adapter_model.bin")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_safetensors(tmp_path, model: H.HFLlama, base: str, out, damage: str) -> None:
    folder = _peft(tmp_path, model)
    st = os.path.join(folder, "adapter_model.safetensors")
    data = open(st, "rb").read()
    new = {"truncated": data[: len(data) - 100], "garbage": os.urandom(300),
           "empty": b""}[damage]
    with open(st, "wb") as f:
        f.write(new)
    _refused(folder, base, out, "not a valid safetensors file", "adapter_model.safetensors")


@pytest.mark.parametrize("target,module,peft_shape,base_shape", [
    ("v_proj", "model.layers.0.self_attn.v_proj", "[16, 32]", "[32, 64]"),
    ("embed_tokens", "model.embed_tokens", "[1115, 32]", "[1115, 64]"),
])
def test_wrong_shapes_name_module_and_both_shapes(tmp_path, base: str, out, target: str,
                                                  module: str, peft_shape: str,
                                                  base_shape: str) -> None:
    other = H.make_hf_llama(n_embd=32, n_layer=2, n_head=4, n_head_kv=2, n_ff=64)
    folder = _peft(tmp_path, other, targets=(target,))
    err = _refused(folder, base, out, module, "adapter_model")
    assert f"delta has shape {peft_shape}" in str(err) and base_shape in str(err)


def test_module_missing_from_base(tmp_path, base: str, out) -> None:
    deeper = H.make_hf_llama(n_layer=3, n_head=4, n_head_kv=2)
    folder = _peft(tmp_path, deeper, targets=("o_proj",))
    _refused(folder, base, out, "model.layers.2.self_attn.o_proj' -> 'blk.2.attn_output.weight'"
             ": no such tensor in the base", "adapter_model.safetensors")


def test_tied_lm_head_refused(tmp_path, model: H.HFLlama, out) -> None:
    tied = H.write_gguf(model, tmp_path / "tied.gguf", tied=True)
    folder = _peft(tmp_path, model, targets=("lm_head",))
    _refused(folder, tied, out, "tied lm_head", "adapter_model.safetensors")


@pytest.mark.parametrize("key,value", [
    ("use_dora", True), ("modules_to_save", ["lm_head"]), ("bias", "all"),
    ("bias", "lora_only"), ("peft_type", "IA3"), ("alora_invocation_tokens", [5, 6]),
    ("init_lora_weights", "pissa"), ("fan_in_fan_out", True), ("lora_bias", True),
])
def test_refused_config_keys(tmp_path, model: H.HFLlama, base: str, out, key: str,
                             value: object) -> None:
    folder = _peft(tmp_path, model)
    _edit_config(folder, **{key: value})
    _refused(folder, base, out, f"'{key}'", "adapter_config.json")


def test_bad_config_values(tmp_path, model: H.HFLlama, base: str, out) -> None:
    folder = _peft(tmp_path, model)
    _edit_config(folder, r=8)  # the tensors have rank 4
    _refused(folder, base, out, "rank 8", "adapter_model.safetensors")
    _edit_config(folder, r="four")
    _refused(folder, base, out, "'r' must be", "adapter_config.json")
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        f.write("{not json")
    _refused(folder, base, out, "unreadable JSON", "adapter_config.json")


def test_unexpected_tensor_refused(tmp_path, model: H.HFLlama, base: str, out) -> None:
    import safetensors.numpy

    folder = _peft(tmp_path, model)
    st = os.path.join(folder, "adapter_model.safetensors")
    t = safetensors.numpy.load_file(st)
    t["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = \
        np.ones(64, np.float32)
    safetensors.numpy.save_file(t, st)
    _refused(folder, base, out, "DoRA magnitude", "adapter_model.safetensors")
    del t["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"]
    del t["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    safetensors.numpy.save_file(t, st)
    _refused(folder, base, out, "lacks its lora_B", "adapter_model.safetensors")


def test_bad_base_and_output(tmp_path, model: H.HFLlama, base: str, out) -> None:
    folder = _peft(tmp_path, model)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(500))
    _refused(folder, str(junk), out, "not a readable GGUF model", "junk.gguf")
    adapter = make_adapter(tmp_path / "some-adapter.gguf", rank=4)
    _refused(folder, adapter, out, "is an adapter, not a base model", "some-adapter.gguf")
    with pytest.raises(ConvertError, match="output folder does not exist"):
        convert(folder, base, tmp_path / "no" / "such" / "dir.gguf")
    with pytest.raises(ValueError, match="outtype"):
        convert(folder, base, out, outtype="q4_0")
    assert not out.exists()


def test_failed_conversion_keeps_existing_output(tmp_path, model: H.HFLlama, base: str,
                                                 out) -> None:
    folder = _peft(tmp_path, model)
    convert(folder, base, out)
    before = out.read_bytes()
    _edit_config(folder, use_dora=True)
    _refused(folder, base, out, "use_dora", "adapter_config.json")
    assert out.read_bytes() == before


def test_unknown_keys_reported(tmp_path, model: H.HFLlama, base: str, out) -> None:
    folder = _peft(tmp_path, model)
    _edit_config(folder, some_future_option=3)
    with pytest.warns(ConvertWarning, match="some_future_option"):
        convert(folder, base, out)
    assert out.exists()


# ---- the command line ----

def test_cli_convert_then_inspect(tmp_path, model: H.HFLlama, base: str, capsys) -> None:
    folder = _peft(tmp_path, model)
    out = tmp_path / "cli.gguf"
    assert main(["lora", "convert", folder, "--base", base, "-o", str(out),
                 "--outtype", "f16"]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "4 LoRA pairs" in text
    assert main(["lora", "inspect", str(out), "--base", base]) == 0
    assert "fits base" in capsys.readouterr().out
    _edit_config(folder, use_dora=True)
    assert main(["lora", "convert", folder, "--base", base, "-o", str(tmp_path / "x.gguf")]) == 1
    err = capsys.readouterr().err
    assert "adapter_config.json" in err and "use_dora" in err
    assert not (tmp_path / "x.gguf").exists()


# ---- the real SmolLM2 (llama arch, 9 heads over 3 KV heads, Q4_1), when it is cached ----

def _reader_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def _head_counts(path: str) -> tuple[int, int]:
    meta = read_header(path).kv
    return int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])


def test_real_shaped_adapter_is_written_as_llama_cpp_reads_it(tmp_path, real_model) -> None:
    """Every pair of a random all-linear PEFT adapter on SmolLM2's shapes, read back from the
    written GGUF: alpha, names, shapes, B's rows permuted for q/k with the head counts of the
    base (independent permutation: convert_hf_to_gguf.py's, in hf_llama), A untouched."""
    smol = real_model("smollm2")
    n_head, n_head_kv = _head_counts(smol)
    assert (n_head, n_head_kv) == (9, 3)  # GQA: a q/k permutation with the wrong count shows
    shapes = H.gguf_module_shapes(smol)
    pairs = H.make_peft(tmp_path / "peft", shapes, r=8, lora_alpha=16, b_std=0.05)
    n_layer = int(read_header(smol).kv["llama.block_count"])
    assert len(pairs) == n_layer * len(H.ALL_LINEAR)
    out = convert(tmp_path / "peft", smol, tmp_path / "smol-lora.gguf", outtype="f16")
    reader = gguf.GGUFReader(out)
    alpha = reader.fields[gguf.Keys.Adapter.LORA_ALPHA]
    assert float(alpha.parts[alpha.data[0]][0]) == 16.0  # llama.cpp's alpha/r = PEFT's 16/8
    written = {t.name: t for t in reader.tensors}
    assert len(written) == 2 * len(pairs)
    names = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v",
             "o_proj": "attn_output", "gate_proj": "ffn_gate", "up_proj": "ffn_up",
             "down_proj": "ffn_down"}
    for module, pair in pairs.items():
        layer, kind = module.split(".")[2], module.split(".")[-1]
        name = f"blk.{layer}.{names[kind]}.weight"
        a = np.asarray(written[name + ".lora_a"].data, dtype=np.float64)
        b = np.asarray(written[name + ".lora_b"].data, dtype=np.float64)
        want_b = pair.b
        if kind == "q_proj":
            want_b = H.llama_cpp_permute(pair.b, n_head)
        elif kind == "k_proj":
            want_b = H.llama_cpp_permute(pair.b, n_head, n_head_kv)
        assert a.shape == pair.a.shape and b.shape == want_b.shape, module
        np.testing.assert_allclose(a, pair.a.astype(np.float16), rtol=0, atol=0, err_msg=module)
        np.testing.assert_allclose(b, want_b.astype(np.float16), rtol=0, atol=0, err_msg=module)
        if kind in ("q_proj", "k_proj"):  # the permutation moved rows (the check has teeth)
            assert not np.array_equal(b, pair.b.astype(np.float16)), module


def test_real_adapter_changes_logits_and_clears(tmp_path, real_model) -> None:
    smol = real_model("smollm2")
    shapes = H.gguf_module_shapes(smol)
    H.make_peft(tmp_path / "peft", shapes, r=8, lora_alpha=16, b_std=0.05)
    out = convert(tmp_path / "peft", smol, tmp_path / "smol-lora.gguf", outtype="f16")
    e = Engine("native")
    try:
        e.load_model(smol, n_ctx=128, n_threads=2)
        before = np.asarray(e.logits("The capital of France is"))
        assert e.set_lora(out, 1.0)
        after = np.asarray(e.logits("The capital of France is"))
        e.clear_loras()
        again = np.asarray(e.logits("The capital of France is"))
    finally:
        e.dispose()
    assert np.abs(after - before).max() > 0.1
    assert np.array_equal(again, before)
    # SmolLM2 ties lm_head to its embeddings (no output.weight): an lm_head LoRA is refused
    H.make_peft(tmp_path / "head", {"lm_head": shapes["model.embed_tokens"]},
                targets=("lm_head",), r=2)
    with pytest.raises(ConvertError, match="tied lm_head"):
        convert(tmp_path / "head", smol, tmp_path / "head.gguf")
    assert not (tmp_path / "head.gguf").exists()


def _hf_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf.py's q/k permutation: the Hugging Face row order."""
    idx = H.llama_cpp_permute(np.arange(w.shape[0]), n_head)  # permuted[i] = hf[idx[i]]
    hf = np.empty_like(w)
    hf[idx] = w
    return hf


def _write_peft(folder: Any, tensors: dict[str, np.ndarray], **cfg: Any) -> None:
    import safetensors.numpy

    os.makedirs(folder)
    safetensors.numpy.save_file({k: np.ascontiguousarray(v, np.float32)
                                 for k, v in tensors.items()},
                                os.path.join(folder, "adapter_model.safetensors"))
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "bias": "none", "use_dora": False, **cfg}, f)


def test_real_qk_deltas_land_on_llama_cpps_rows(tmp_path, real_model) -> None:
    """A reference that needs no forward pass: a LoRA whose delta is minus layer 0's q weight
    (in Hugging Face row order, from the dequantized GGUF) zeroes q, one whose delta is minus
    k's zeroes k; both make layer 0's attention uniform, so the two give the same logits. A
    wrong permutation, head count, rank or alpha leaves q or k non-zero and the two apart."""
    smol = real_model("smollm2")
    n_head, n_head_kv = _head_counts(smol)
    t = _reader_tensors(smol)
    wq, wk = (gguf.quants.dequantize(t[f"blk.0.attn_{x}.weight"].data,
                                     t[f"blk.0.attn_{x}.weight"].tensor_type).astype(np.float64)
              for x in ("q", "k"))
    hq, hk = _hf_rows(wq, n_head), _hf_rows(wk, n_head_kv)
    assert not np.array_equal(hq, wq) and not np.array_equal(hk, wk)
    pre = "base_model.model.model.layers.0.self_attn."
    # q: rank 576, alpha 1152 (PEFT scaling 2): A = I, B = -Wq / 2
    _write_peft(tmp_path / "q", {pre + "q_proj.lora_A.weight": np.eye(wq.shape[1]),
                                 pre + "q_proj.lora_B.weight": -hq / 2},
                r=wq.shape[1], lora_alpha=2.0 * wq.shape[1], target_modules=["q_proj"])
    # k: default rank 8 / alpha 16, but rank_pattern 192 and alpha_pattern 96 (scaling 0.5)
    n_k = wk.shape[0]
    _write_peft(tmp_path / "k", {pre + "k_proj.lora_A.weight": hk,
                                 pre + "k_proj.lora_B.weight": -2.0 * np.eye(n_k)},
                r=8, lora_alpha=16, rank_pattern={"k_proj": n_k},
                alpha_pattern={"k_proj": n_k / 2}, target_modules=["k_proj"])
    q_out = convert(tmp_path / "q", smol, tmp_path / "q.gguf")
    k_out = convert(tmp_path / "k", smol, tmp_path / "k.gguf")
    text = "The capital of France is Paris, and the capital of Italy is"
    e = Engine("native")
    try:
        e.load_model(smol, n_ctx=128, n_threads=2)
        base = np.asarray(e.logits(text), dtype=np.float64)
        logits = {}
        for name, path in (("q", q_out), ("k", k_out)):
            assert e.set_lora(path, 1.0)
            logits[name] = np.asarray(e.logits(text), dtype=np.float64)
            e.clear_loras()
    finally:
        e.dispose()
    moved = _rel(logits["q"], base)
    apart = _rel(logits["q"], logits["k"])
    # measured: moved 0.72, apart 0.064 (the Q4_1 matmul quantizes its input to Q8_1, so q and
    # k are zeroed only to ~1%); a q or k delta left in Hugging Face row order: apart 0.71-0.73
    assert moved > 0.2  # uniform attention in layer 0 changes the logits a lot...
    assert apart < moved / 4  # ...and the same way whether q or k was zeroed


# ---- aLoRA: llama.cpp loads it, llamart must refuse it before set_lora ----

def test_alora_adapter_is_refused(tmp_path, base: str, capsys) -> None:
    plain = make_adapter(tmp_path / "plain.gguf", base=base, rank=4)
    alora = make_adapter(tmp_path / "alora.gguf", base=base, rank=4, alora_tokens=[300, 301])
    base_header = validate_model(base)
    check_applicable(validate_adapter(plain, base_header))  # no error
    header = validate_adapter(alora, base_header)  # structurally valid...
    with pytest.raises(AdapterError, match="aLoRA") as info:
        check_applicable(header)  # ...but must not be applied from the first token
    assert info.value.path == str(tmp_path / "alora.gguf")
    assert "2 invocation tokens" in str(info.value)
    assert main(["lora", "inspect", alora, "--base", base]) == 1
    assert "aLoRA" in capsys.readouterr().out
    assert main(["lora", "inspect", plain, "--base", base]) == 0


def test_warnings_module_is_quiet_for_a_plain_folder(tmp_path, model: H.HFLlama, base: str,
                                                      out) -> None:
    folder = _peft(tmp_path, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(folder, base, out)
