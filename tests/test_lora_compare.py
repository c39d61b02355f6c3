"""``llamart lora compare``: drift and perplexity across scales, checked against numpy.

The measurements run on the tiny generated model and its random adapters with a backend that
applies LoRA (native); the references are computed here from ``Engine.logits`` with numpy,
apart from the module's own math. The refusal on a backend without LoRA and the prompt-file
errors run everywhere (a pure-Python fake backend, no numpy).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest

from llamart import Engine, UnsupportedCapabilityError
from llamart.cli import main as cli_main
from llamart.lora import compare_cli
from llamart.lora.compare import (
    Comparison,
    ScaleSummary,
    Thresholds,
    compare,
    parse_scales,
    perplexity,
    recommend,
)
from llamart.lora.divergence import PyMath
from llamart.lora.prompts import GoldenPrompt, PromptFileError, load_prompts

try:
    from llamart.testing.fake import FakeBackend  # type: ignore[import-not-found]
except ImportError:
    from fake_backend import FakeBackend

SCALES = (0.0, 0.5, 1.0, 1.5)
N = 10  # greedy tokens per prompt: O(N^2) evaluation, keep it small
TEXTS = ["Once upon a time", "The history of the", "Hello, I am a"]
REFERENCE = ("Once upon a time there was a little cat. The cat had a big house with a red "
             "tree and blue water. One day the dog came to play a game.")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(folder: Any, name: str, text: str | bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return path


def _prompts(folder: Any) -> list[GoldenPrompt]:
    _write(folder, "golden.txt", "\n".join(TEXTS) + "\n\n")
    chat = [{"role": "user", "content": "Tell me a story about a cat"}]
    _write(folder, "chats.jsonl", json.dumps({"messages": chat}) + "\n")
    return load_prompts(os.path.join(folder, "golden.txt")) + load_prompts(
        os.path.join(folder, "chats.jsonl"))


@pytest.fixture(scope="module")
def native(fx: dict[str, str]) -> Iterator[Engine]:
    eng = Engine()
    if not eng.capabilities.lora:
        eng.dispose()
        pytest.skip("this backend does not apply LoRA (tested below with the fake backend)")
    eng.load_model(fx["model_f32"], n_ctx=256, n_threads=1)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def result(native: Engine, fx: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Comparison:
    prompts = _prompts(tmp_path_factory.mktemp("prompts"))
    return compare(native, fx["lora_a"], prompts, SCALES, reference_text=REFERENCE,
                   max_tokens=N, reference_tokens=24)


# ---- against independent references (native) ----

def _np() -> Any:
    return pytest.importorskip("numpy")


def _log_softmax(np: Any, logits: Any) -> Any:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max())
    return np.log(e / e.sum())


def _tokens(engine: Engine, p: GoldenPrompt) -> list[int]:
    if p.messages is None:
        return engine.tokenize(p.text or "")
    # the rendering chat() uses, checked separately against chat()'s own reply below
    from llamart.lora.compare import _render_chat

    return engine.tokenize(_render_chat(engine, p), parse_special=True)


def test_scale_zero_is_the_base(result: Comparison) -> None:
    for p in result.prompts:
        zero = p.scales[0.0]
        assert zero.kl == [0.0] * len(zero.kl) and len(zero.kl) >= 1
        assert zero.diverge_at is None
        assert zero.text == p.base.text
    s0 = result.summary(0.0)
    assert s0.mean_kl == 0.0 and s0.diverged == 0 and not s0.acts
    assert s0.perplexity == pytest.approx(result.reference["base_perplexity"], rel=1e-12)


def test_kl_grows_with_scale(result: Comparison) -> None:
    means = [result.summary(s).mean_kl for s in SCALES]
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    for p in result.prompts:  # measured on this adapter: monotone for every prompt too
        per = [p.scales[s].mean_kl for s in SCALES]
        assert all(a < b for a, b in zip(per, per[1:], strict=False)), (p.prompt.label, per)
    assert result.summary(1.0).diverged >= 1  # the random adapter visibly changes text


def test_kl_and_greedy_tokens_match_numpy(native: Engine, fx: dict[str, str],
                                          result: Comparison) -> None:
    np = _np()
    for p in result.prompts:
        ptoks = _tokens(native, p.prompt)
        assert len(ptoks) == p.n_prompt_tokens
        base_lp, toks = [], []
        for _ in range(N):  # the base's greedy chain, computed here from raw logits
            lg = np.asarray(native.logits(ptoks + toks))
            base_lp.append(_log_softmax(np, lg))
            t = int(np.argmax(lg))
            if t == native.model_info.eos:
                break
            toks.append(t)
        assert toks == p.base_tokens
        for s in (0.5, 1.5):
            native.set_lora(fx["lora_a"], s)
            try:
                adapter_lp = [_log_softmax(np, native.logits(ptoks + toks[:k]))
                              for k in range(len(base_lp))]
            finally:
                native.clear_loras()
            want = [float(np.sum(np.exp(a) * (a - b))) for a, b in
                    zip(base_lp, adapter_lp, strict=True)]
            got = p.scales[s].kl
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
            assert p.scales[s].mean_kl == pytest.approx(sum(want) / len(want), rel=1e-9)
            first = next((k for k, lp in enumerate(adapter_lp)
                          if int(np.argmax(lp)) != (toks + [native.model_info.eos])[k]), None)
            assert p.scales[s].diverge_at == first


def test_greedy_text_is_the_argmax_chain(native: Engine, result: Comparison) -> None:
    """complete()/chat() at temperature 0 give the text of the teacher-forced argmax chain."""
    for p in result.prompts:  # in context: a first piece's leading space is kept
        ptoks = _tokens(native, p.prompt)
        full, head = native.detokenize(ptoks + p.base_tokens), native.detokenize(ptoks)
        assert p.base_tokens and full.startswith(head) and full[len(head):] == p.base.text
    chat = next(p for p in result.prompts if p.prompt.kind == "chat")
    reply = native.chat([dict(m) for m in chat.prompt.messages or ()], max_tokens=N,
                        temperature=0.0, repeat_penalty=1.0)
    assert reply == chat.base.text


def test_perplexity_matches_numpy(native: Engine, fx: dict[str, str],
                                  result: Comparison) -> None:
    np = _np()
    toks = native.tokenize(REFERENCE)[:24]
    assert result.reference["n_tokens"] == len(toks) == 24

    def ppl() -> float:
        nll = [-_log_softmax(np, native.logits(toks[:i]))[toks[i]] for i in range(1, len(toks))]
        return float(np.exp(np.mean(nll)))

    assert result.reference["base_perplexity"] == pytest.approx(ppl(), rel=1e-9)
    native.set_lora(fx["lora_a"], 1.5)
    try:
        want = ppl()
    finally:
        native.clear_loras()
    s = result.summary(1.5)
    assert s.perplexity == pytest.approx(want, rel=1e-9)
    assert s.perplexity_ratio == pytest.approx(want / result.reference["base_perplexity"])
    assert s.perplexity != pytest.approx(result.reference["base_perplexity"], rel=1e-3)


def test_pure_python_math_equals_numpy(native: Engine, fx: dict[str, str],
                                       tmp_path: Any) -> None:
    np = _np()
    prompts = load_prompts(_write(tmp_path, "one.txt", TEXTS[0]))
    a = compare(native, fx["lora_a"], prompts, (1.0,), max_tokens=4, use_numpy=False)
    b = compare(native, fx["lora_a"], prompts, (1.0,), max_tokens=4, use_numpy=True)
    assert (a.math, b.math) == ("python", "numpy")
    assert a.prompts[0].scales[1.0].kl == pytest.approx(b.prompts[0].scales[1.0].kl, rel=1e-9)
    m = PyMath()
    lg = native.logits(TEXTS[0])
    assert m.argmax(lg) == int(np.argmax(np.asarray(lg)))
    assert math.fsum(math.exp(x) for x in m.log_softmax(lg)) == pytest.approx(1.0, abs=1e-12)


def test_engine_adapters_unchanged(native: Engine, fx: dict[str, str], tmp_path: Any) -> None:
    prompts = load_prompts(_write(tmp_path, "one.txt", TEXTS[0]))
    native.set_lora(fx["lora_b"], 0.7)
    native.set_lora(fx["lora_a"], 0.3)
    try:
        before = native.logits(TEXTS[0]).tobytes()
        compare(native, fx["lora_a"], prompts, (1.0,), max_tokens=3)
        assert native.loras == {fx["lora_b"]: 0.7, fx["lora_a"]: 0.3}
        assert native.logits(TEXTS[0]).tobytes() == before
        long = load_prompts(_write(tmp_path, "long.txt", "the cat " * 200))
        with pytest.raises(PromptFileError, match=r"long\.txt: line 1: .*does not fit"):
            compare(native, fx["lora_a"], long, (1.0,), max_tokens=3)
        assert native.loras == {fx["lora_b"]: 0.7, fx["lora_a"]: 0.3}
    finally:
        native.clear_loras()


# ---- reports and the CLI (native) ----

def test_json_and_plot_from_the_cli(native: Engine, fx: dict[str, str], tmp_path: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    prompts = _write(tmp_path, "p.txt", "\n".join(TEXTS[:2]))
    ref = _write(tmp_path, "ref.txt", REFERENCE)
    out, png = os.path.join(tmp_path, "r.json"), os.path.join(tmp_path, "r.png")
    rc = cli_main(["lora", "compare", fx["model_f32"], fx["lora_a"], "--prompts", prompts,
                   "--scales", "0,0.5,1.5", "--reference-text", ref, "--reference-tokens", "12",
                   "--max-tokens", "6", "--json", out, "--plot", png, "--threads", "1"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "[1/" in cap.err and "done in" in cap.err  # progress on stderr
    assert "recommended:" in cap.out and "mean KL" in cap.out and "ref ppl" in cap.out
    with open(out) as f:
        d = json.load(f)
    assert d["scales"] == [0.0, 0.5, 1.5] and d["max_tokens"] == 6
    assert d["backend"] == native.capabilities.backend and d["adapter"] == fx["lora_a"]
    assert [p["text"] for p in d["prompts"]] == TEXTS[:2] and d["sets"] == ["p"]
    assert d["reference"]["n_tokens"] == 12 and d["reference"]["path"] == ref
    assert d["thresholds"] == {"act_fraction": 0.5, "act_kl": 0.05, "max_ppl_rise": 0.25,
                               "max_kl": 2.0}
    for p in d["prompts"]:
        assert [s["scale"] for s in p["scales"]] == [0.0, 0.5, 1.5]
        assert p["scales"][0]["kl"] == [0.0] * len(p["scales"][0]["kl"])
        assert p["scales"][0]["text"] == p["base"]["text"]
        assert all(len(s["kl"]) == len(p["scales"][0]["kl"]) for s in p["scales"])
    sums = d["summaries"]
    assert sums[0]["mean_kl"] == 0.0 and not sums[0]["acts"]
    assert sums[2]["mean_kl"] > sums[1]["mean_kl"] > 0
    assert sums[2]["mean_kl"] == pytest.approx(
        sum(p["scales"][2]["mean_kl"] for p in d["prompts"]) / 2, rel=1e-12)
    if d["recommended"]:
        lo, hi = d["recommended"]
        assert f"scales {lo:g} to {hi:g}" in d["verdict"] in cap.out
    assert d["timing"]["logits_calls"] > 0
    with open(png, "rb") as f:
        data = f.read()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_thresholds_from_the_cli_change_the_verdict(fx: dict[str, str], tmp_path: Any,
                                                    capsys: pytest.CaptureFixture[str],
                                                    native: Engine) -> None:
    prompts = _write(tmp_path, "p.txt", TEXTS[0])
    out = os.path.join(tmp_path, "r.json")
    rc = cli_main(["lora", "compare", fx["model_f32"], fx["lora_a"], "--prompts", prompts,
                   "--scales", "0.5,1", "--max-tokens", "4", "--max-kl", "0", "--json", out,
                   "--quiet"])
    cap = capsys.readouterr()
    assert rc == 0 and cap.err == ""
    with open(out) as f:
        d = json.load(f)
    assert d["thresholds"]["max_kl"] == 0.0
    assert all(s["over_steers"] for s in d["summaries"]) and d["recommended"] is None
    assert "over-steers already at 0.5" in cap.out


# ---- everywhere: no LoRA, bad files, the verdict logic ----

def test_refuses_on_a_backend_without_lora(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    model = _write(tmp_path, "m.gguf", b"not opened")
    adapter = _write(tmp_path, "a.gguf", b"not opened")
    prompts = _write(tmp_path, "p.txt", "hello\n")
    eng = Engine(FakeBackend(lora=False))
    with pytest.raises(UnsupportedCapabilityError, match="cannot compare: LoRA adapters are "
                       "not applied on the fake backend.*not the adapter's drift"):
        compare(eng, adapter, load_prompts(prompts))
    eng.dispose()
    monkeypatch.setattr(compare_cli, "_engine", lambda backend: Engine(FakeBackend(lora=False)))
    json_out = os.path.join(tmp_path, "out.json")
    rc = cli_main(["lora", "compare", model, adapter, "--prompts", prompts, "--json", json_out])
    cap = capsys.readouterr()
    assert rc != 0
    assert "llamart: error: cannot compare" in cap.err and "fake backend" in cap.err
    assert "drift" not in cap.out and not os.path.exists(json_out)


def test_runs_on_pure_python_without_numpy(fx: dict[str, str], tmp_path: Any) -> None:
    """The fake backend (whose logits depend on the adapter set) with the pure-Python math."""
    eng = Engine(FakeBackend(lora=True))
    try:
        eng.load_model(fx["model_f32"], n_ctx=128)
        prompts = load_prompts(_write(tmp_path, "p.txt", "hello\nabc\n"))
        r = compare(eng, fx["lora_a"], prompts, (0.0, 1.0), max_tokens=3, use_numpy=False,
                    reference_text="hello world", reference_tokens=6)
        assert r.math == "python" and eng.loras == {}
        assert r.summary(0.0).mean_kl == 0.0 and r.summary(1.0).mean_kl > 0.1
        assert r.summary(1.0).diverged == 2 and r.summary(1.0).acts
        toks = eng.tokenize("hello world")[:6]
        eng.set_lora(fx["lora_a"], 1.0)
        want = perplexity(eng, toks)
        nll = []
        for i in range(1, len(toks)):
            x = list(eng.logits(toks[:i]))
            lse = max(x) + math.log(sum(math.exp(v - max(x)) for v in x))
            nll.append(lse - x[toks[i]])
        eng.clear_loras()
        assert want == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-12)
        assert r.summary(1.0).perplexity == pytest.approx(want, rel=1e-12)
    finally:
        eng.dispose()


@pytest.mark.parametrize("name, data, message", [
    ("empty.txt", "\n  \n", r"empty\.txt: the prompt file is empty"),
    ("bin.txt", b"ab\0cd\n", r"bin\.txt: not a text prompt file \(it contains NUL bytes\)"),
    ("latin.txt", b"caf\xe9\n", r"latin\.txt: not UTF-8 text \(invalid byte at offset 3\)"),
    ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', r"bad\.jsonl: line 2: not valid JSON"),
    ("list.jsonl", "[1, 2]\n", r"list\.jsonl: line 1: each line must be a JSON object"),
    ("both.jsonl", '{"prompt": "a", "messages": []}\n', r"line 1: give exactly one of"),
    ("neither.jsonl", '{"name": "x"}\n', r"line 1: give exactly one of"),
    ("keys.jsonl", '{"prompt": "a", "temp": 1}\n', r"line 1: unknown keys \['temp'\]"),
    ("nomsg.jsonl", '{"messages": []}\n', r"line 1: 'messages' must be a non-empty list"),
    ("role.jsonl", '{"messages": [{"content": "hi"}]}\n',
     r"line 1: messages\[0\]\['role'\] is missing"),
    ("content.jsonl", '\n{"messages": [{"role": "user", "content": 3}]}\n',
     r"content\.jsonl: line 2: messages\[0\]\['content'\] must be a string"),
    ("blank.jsonl", '{"prompt": "  "}\n', r"line 1: 'prompt' must be a non-empty string"),
])
def test_bad_prompt_files(tmp_path: Any, name: str, data: str | bytes, message: str) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(PromptFileError, match=message) as e:
        load_prompts(path)
    assert e.value.path == path and isinstance(e.value, ValueError)


def test_prompt_files_parse(tmp_path: Any) -> None:
    t = load_prompts(_write(tmp_path, "a.txt", "one\r\n\n two \n"))
    assert [(p.text, p.line, p.kind, p.set) for p in t] == [("one", 1, "text", "a"),
                                                             (" two ", 3, "text", "a")]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    j = load_prompts(_write(tmp_path, "b.data", json.dumps({"messages": msgs, "name": "n"})
                            + "\n" + json.dumps({"prompt": "x\ny"})), set_name="s")
    assert j[0].kind == "chat" and list(j[0].messages or ()) == msgs and j[0].label == "n"
    assert j[1].text == "x\ny" and j[1].line == 2 and j[1].set == "s"


def test_cli_bad_inputs(fx: dict[str, str], tmp_path: Any,
                        capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, "p.txt", "hello")
    bad = _write(tmp_path, "bad.jsonl", '{"prompt": 1}\n')
    cases = [
        (["--prompts", bad], "bad.jsonl: line 1: 'prompt' must be a non-empty string"),
        (["--prompts", os.path.join(tmp_path, "missing.txt")], "missing.txt: No such file"),
        (["--prompts", good, "--reference-text", _write(tmp_path, "r.txt", "")],
         "r.txt: the reference text is empty"),
        (["--prompts", good, "--act-kl", "-1"], "threshold act_kl must be a number >= 0"),
        (["--prompts", good, "--json", os.path.join(tmp_path, "no", "r.json")],
         "No such directory"),
    ]
    for extra, message in cases:
        rc = cli_main(["lora", "compare", fx["model_f32"], fx["lora_a"], *extra])
        err = capsys.readouterr().err
        assert rc == 1 and "llamart: error: " in err and message in err, (extra, err)
    with pytest.raises(SystemExit) as e:  # a usage error: exit 2
        cli_main(["lora", "compare", fx["model_f32"], fx["lora_a"], "--prompts", good,
                  "--scales", "0,x"])
    assert e.value.code == 2 and "argument --scales: 'x' is not a number" in \
        capsys.readouterr().err


def _summary(scale: float, acts: bool, over: bool) -> ScaleSummary:
    return ScaleSummary(scale, 0.0, 0, 1, {}, acts=acts, over_steers=over)


def test_recommended_range() -> None:
    S = _summary
    rng, text = recommend([S(0, False, False), S(0.5, True, False), S(1, True, False),
                           S(1.5, True, True)])
    assert rng == (0.5, 1) and "0.5 to 1; it over-steers from 1.5" in text
    rng, text = recommend([S(1, True, False), S(0, False, False), S(2, True, False)])
    assert rng == (1, 2) and "no measured scale over-steers (up to 2)" in text
    assert recommend([S(0, False, False), S(1, False, False)])[0] is None
    rng, text = recommend([S(0, False, False), S(0.5, True, True)])
    assert rng is None and "over-steers already at 0.5" in text


def test_verdict_thresholds() -> None:
    from llamart.lora.compare import _verdict

    th = Thresholds()
    s = ScaleSummary(1.0, 0.01, 1, 2, {})
    _verdict(s, th)
    assert s.acts and not s.over_steers  # half the prompts changed
    s = ScaleSummary(1.0, 0.06, 0, 2, {})
    _verdict(s, th)
    assert s.acts and s.reasons == ["mean KL 0.06 >= 0.05"]
    s = ScaleSummary(1.0, 0.01, 0, 2, {}, perplexity=13.0, perplexity_ratio=1.3)
    _verdict(s, th)
    assert not s.acts and s.over_steers
    s = ScaleSummary(1.0, 2.5, 2, 2, {})
    _verdict(s, th)
    assert s.acts and s.over_steers
    with pytest.raises(ValueError, match="max_kl"):
        Thresholds(max_kl=float("nan"))
    assert parse_scales("0, .5,1") == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="not finite"):
        parse_scales("1,inf")
