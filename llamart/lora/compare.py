"""Drift of a LoRA adapter from its base model across scales, and the scales worth using.

For each golden prompt and scale :func:`compare` measures, with only the Engine's public calls:

- the greedy continuations (``complete``/``chat`` with temperature 0 and no repeat penalty,
  which is llama.cpp's plain argmax) of the base and of the adapter, side by side;
- ``diverge_at``: the index of the first generated token where the adapter's greedy choice
  differs from the base's (None: identical for all ``max_tokens`` tokens);
- ``mean_kl``: the mean over the base's greedy continuation of KL(base || adapter) of the
  next-token distributions, in nats per token. It is teacher-forced: both models see the same
  prefix, prompt + the base's first k tokens, for k = 0 .. n-1;
- with a reference text, its perplexity exp(mean NLL) under the base and under each scale.

Cost: ``Engine.logits`` evaluates its prompt from a clean state, so teacher forcing along n
tokens evaluates n*p + n*(n-1)/2 tokens (p = prompt tokens): O(n^2), about 1000 token
evaluations per prompt and scale for p = 15, n = 32; the reference text costs m*(m-1)/2 per
scale for m tokens. A batched "logits at every position" call would make both O(n).

The verdict at each scale (thresholds in :class:`Thresholds`, all adjustable):

- the adapter *acts* when its greedy text differs from the base's on at least ``act_fraction``
  of the prompts, or its mean KL is at least ``act_kl`` nats/token;
- it *over-steers* when the reference perplexity exceeds (1 + ``max_ppl_rise``) times the
  base's, or its mean KL exceeds ``max_kl`` nats/token (exp(KL) is the factor by which the
  adapter's perplexity on the base's own predictions exceeds the base's; 2 nats = 7.4x).

The recommended range runs from the smallest scale that acts to the largest scale above it
before the first one that over-steers. On a backend that cannot apply LoRA
(``capabilities.lora`` False) :func:`compare` raises UnsupportedCapabilityError: a no-op is
never reported as "no drift".
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AdapterError, LlamartError, UnsupportedCapabilityError
from .divergence import Math, get_math
from .prompts import GoldenPrompt, PromptFileError

DEFAULT_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
DEFAULT_MAX_TOKENS = 32
DEFAULT_REFERENCE_TOKENS = 64
Progress = Callable[[int, int, str], None]  # (done, total, what is being done now)


@dataclass(frozen=True)
class Thresholds:
    """When the adapter acts and when it over-steers at a scale (see the module docstring)."""

    act_fraction: float = 0.5  # share of prompts whose greedy text changes
    act_kl: float = 0.05  # nats/token; exp(0.05) = a 5% perplexity rise on the base's picks
    max_ppl_rise: float = 0.25  # reference perplexity may rise 25% over the base's
    max_kl: float = 2.0  # nats/token

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise ValueError(f"threshold {k} must be a number >= 0, got {v!r}")


@dataclass
class Continuation:
    """One greedy continuation (the base's, or the adapter's at one scale)."""

    text: str
    diverge_at: int | None = None  # first token index differing from the base (None: none)
    kl: list[float] = field(default_factory=list)  # KL(base || this) at each position
    mean_kl: float = 0.0


@dataclass
class PromptResult:
    """A prompt's base continuation and its continuation at each scale."""

    prompt: GoldenPrompt
    n_prompt_tokens: int
    base_tokens: list[int]  # the base's greedy tokens (argmax of its logits, teacher-forced)
    base: Continuation
    scales: dict[float, Continuation] = field(default_factory=dict)


@dataclass
class ScaleSummary:
    """Everything measured at one scale, and the verdict."""

    scale: float
    mean_kl: float
    diverged: int
    n_prompts: int
    sets: dict[str, dict[str, float]]  # prompt set -> {"mean_kl", "diverged", "n_prompts"}
    perplexity: float | None = None
    perplexity_ratio: float | None = None
    acts: bool = False
    over_steers: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def diverged_fraction(self) -> float:
        return self.diverged / self.n_prompts if self.n_prompts else 0.0


@dataclass
class Comparison:
    """The whole result of :func:`compare`; :meth:`to_dict` is the JSON report."""

    model: str
    adapter: str
    backend: str
    math: str
    max_tokens: int
    thresholds: Thresholds
    prompts: list[PromptResult]
    summaries: list[ScaleSummary]
    reference: dict[str, Any] | None
    recommended: tuple[float, float] | None
    verdict: str
    timing: dict[str, float]

    @property
    def sets(self) -> list[str]:
        return list(dict.fromkeys(p.prompt.set for p in self.prompts))

    def summary(self, scale: float) -> ScaleSummary:
        return next(s for s in self.summaries if s.scale == scale)

    def to_dict(self) -> dict[str, Any]:
        prompts = []
        for p in self.prompts:
            prompts.append({
                **p.prompt.to_dict(),
                "n_prompt_tokens": p.n_prompt_tokens,
                "base": {"text": p.base.text, "tokens": p.base_tokens},
                "scales": [{"scale": s, "text": c.text, "diverge_at": c.diverge_at,
                            "mean_kl": c.mean_kl, "kl": c.kl} for s, c in p.scales.items()],
            })
        summaries = []
        for s in self.summaries:
            d = asdict(s)
            d["diverged_fraction"] = s.diverged_fraction
            summaries.append(d)
        lo_hi = list(self.recommended) if self.recommended else None
        return {"model": self.model, "adapter": self.adapter, "backend": self.backend,
                "math": self.math, "max_tokens": self.max_tokens,
                "thresholds": asdict(self.thresholds), "sets": self.sets,
                "scales": [s.scale for s in self.summaries], "summaries": summaries,
                "prompts": prompts, "reference": self.reference,
                "recommended": lo_hi, "verdict": self.verdict, "timing": self.timing}


class _Counter:
    """Counts logits calls and evaluated tokens (the cost the module docstring states)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0
        self.tokens = 0

    def logits(self, tokens: Sequence[int]) -> Any:
        self.calls += 1
        self.tokens += len(tokens)
        return self.engine.logits(list(tokens))


def _render_chat(engine: Any, prompt: GoldenPrompt) -> str:
    """The chat's text through the model's template (what Engine.chat evaluates)."""
    assert prompt.messages is not None
    try:
        return engine.apply_chat_template([dict(m) for m in prompt.messages])
    except LlamartError as e:
        raise PromptFileError(prompt.source, f"the model's chat template failed: {e}",
                              prompt.line) from e


def _prompt_tokens(engine: Any, prompt: GoldenPrompt) -> list[int]:
    """The tokens complete()/chat() evaluate for this prompt."""
    if prompt.messages is not None:
        return engine.tokenize(_render_chat(engine, prompt), add_special=True,
                               parse_special=True)
    assert prompt.text is not None
    return engine.tokenize(prompt.text, add_special=True, parse_special=False)


def _greedy_text(engine: Any, prompt: GoldenPrompt, n: int) -> str:
    kw: dict[str, Any] = dict(max_tokens=n, temperature=0.0, repeat_penalty=1.0)
    if prompt.messages is not None:
        return engine.chat([dict(m) for m in prompt.messages], **kw)
    assert prompt.text is not None
    return engine.complete(prompt.text, **kw)


def _base_run(ev: _Counter, m: Math, ptoks: list[int], n: int, eos: int
              ) -> tuple[list[int], list[Any]]:
    """The base's greedy tokens and its log-probabilities at each prefix (n logits calls)."""
    tokens: list[int] = []
    logps: list[Any] = []
    for _ in range(n):
        logits = ev.logits(ptoks + tokens)
        logps.append(m.log_softmax(logits))
        tok = m.argmax(logits)
        if tok == eos:
            break
        tokens.append(tok)
    return tokens, logps


def _scaled_run(ev: _Counter, m: Math, ptoks: list[int], base_tokens: list[int],
                base_logps: list[Any], eos: int) -> tuple[int | None, list[float]]:
    """(diverge_at, KL at each position) of the adapter along the base's continuation."""
    diverge_at = None
    kls = []
    for k, logp_base in enumerate(base_logps):
        logits = ev.logits(ptoks + base_tokens[:k])
        kls.append(m.kl(logp_base, m.log_softmax(logits)))
        base_next = base_tokens[k] if k < len(base_tokens) else eos  # the base ended there
        if diverge_at is None and m.argmax(logits) != base_next:
            diverge_at = k
    return diverge_at, kls


def perplexity(engine: Any, tokens: Sequence[int], math_: Math | None = None,
               _ev: _Counter | None = None) -> float:
    """exp(mean NLL) of tokens[1:] given their prefixes, under the engine's current state."""
    m = math_ or get_math()
    ev = _ev or _Counter(engine)
    nll = [-m.logprob(m.log_softmax(ev.logits(tokens[:i])), tokens[i])
           for i in range(1, len(tokens))]
    return math.exp(math.fsum(nll) / len(nll))


def _verdict(s: ScaleSummary, th: Thresholds) -> None:
    if s.diverged_fraction >= th.act_fraction and s.diverged:
        s.reasons.append(f"greedy text changes on {s.diverged}/{s.n_prompts} prompts")
    if s.mean_kl >= th.act_kl and s.mean_kl > 0:
        s.reasons.append(f"mean KL {s.mean_kl:.3g} >= {th.act_kl:g}")
    s.acts = bool(s.reasons)
    over = []
    if s.perplexity_ratio is not None and s.perplexity_ratio > 1 + th.max_ppl_rise:
        over.append(f"reference perplexity x{s.perplexity_ratio:.2f} > x{1 + th.max_ppl_rise:g}")
    if s.mean_kl > th.max_kl:
        over.append(f"mean KL {s.mean_kl:.3g} > {th.max_kl:g}")
    s.over_steers = bool(over)
    s.reasons += [f"over-steers: {r}" for r in over]


def recommend(summaries: Sequence[ScaleSummary]) -> tuple[tuple[float, float] | None, str]:
    """(low, high) scales where the adapter acts without over-steering, and a sentence."""
    ordered = sorted(summaries, key=lambda s: s.scale)
    acting = [s for s in ordered if s.acts]
    if not acting:
        return None, ("the adapter does not act at any measured scale (no scale changes the "
                      "greedy text on enough prompts or reaches the KL threshold): try larger "
                      "scales")
    lo = acting[0]
    if lo.over_steers:
        return None, (f"the adapter over-steers already at {lo.scale:g}, the smallest scale "
                      f"where it acts: try scales between the last quiet one and {lo.scale:g}")
    hi = lo
    for s in ordered[ordered.index(lo) + 1:]:
        if s.over_steers:
            break
        hi = s
    if hi is ordered[-1]:
        tail = f"; no measured scale over-steers (up to {hi.scale:g})"
    else:
        nxt = ordered[ordered.index(hi) + 1]
        tail = f"; it over-steers from {nxt.scale:g}"
    return (lo.scale, hi.scale), (f"the adapter acts without over-steering at scales "
                                  f"{lo.scale:g} to {hi.scale:g}{tail}")


def require_lora(engine: Any) -> None:
    """UnsupportedCapabilityError unless the engine's backend applies LoRA adapters."""
    caps = engine.capabilities
    if not caps.lora:
        reason = caps.lora_reason or f"the {caps.backend} backend does not apply LoRA adapters"
        raise UnsupportedCapabilityError(
            f"cannot compare: {reason}; every scale would measure the base model, which is "
            f"not the adapter's drift", reason=reason)


def compare(engine: Any, adapter: str | os.PathLike[str], prompts: Sequence[GoldenPrompt],
            scales: Sequence[float] = DEFAULT_SCALES, *,
            reference_text: str | None = None, reference_name: str = "reference",
            max_tokens: int = DEFAULT_MAX_TOKENS,
            reference_tokens: int = DEFAULT_REFERENCE_TOKENS,
            thresholds: Thresholds | None = None, progress: Progress | None = None,
            use_numpy: bool | None = None) -> Comparison:
    """Measure ``adapter`` against the engine's loaded model (see the module docstring).

    The engine's other adapters stay applied (they are part of the base); the engine's
    adapter set is the same afterwards as before, also after an error.
    """
    th = thresholds or Thresholds()
    require_lora(engine)
    caps = engine.capabilities
    info = engine.model_info
    if info is None:
        raise ValueError("load a model before comparing an adapter")
    apath = os.fspath(adapter)
    scales = [float(s) for s in scales]
    if not scales or any(not math.isfinite(s) for s in scales):
        raise ValueError(f"scales must be finite numbers, got {scales}")
    if len(set(scales)) != len(scales):
        raise ValueError(f"scales repeat a value: {scales}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
    if not prompts:
        raise ValueError("no prompts to compare")
    m = get_math(use_numpy)
    ev = _Counter(engine)
    t0 = time.perf_counter()
    total = len(prompts) * (1 + len(scales)) + (1 + len(scales) if reference_text else 0)
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    prior = engine.loras.get(apath)
    results: list[PromptResult] = []
    reference: dict[str, Any] | None = None
    ppl: dict[float, float] = {}
    try:
        ptoks_all = []
        for p in prompts:
            ptoks = _prompt_tokens(engine, p)
            if len(ptoks) + max_tokens > info.n_ctx:
                raise PromptFileError(p.source, f"the prompt is {len(ptoks)} tokens: with "
                                      f"{max_tokens} more it does not fit the context "
                                      f"(n_ctx={info.n_ctx})", p.line)
            ptoks_all.append(ptoks)
        for i, (p, ptoks) in enumerate(zip(prompts, ptoks_all, strict=True)):
            engine.remove_lora(apath)
            step(f"prompt {i + 1}/{len(prompts)}: base")
            btoks, blogps = _base_run(ev, m, ptoks, max_tokens, info.eos)
            res = PromptResult(p, len(ptoks), btoks, Continuation(_greedy_text(engine, p,
                                                                               max_tokens)))
            for s in scales:
                step(f"prompt {i + 1}/{len(prompts)}: scale {s:g}")
                if not engine.set_lora(apath, s):
                    raise AdapterError(f"{apath}: the adapter was not applied", path=apath)
                div, kls = _scaled_run(ev, m, ptoks, btoks, blogps, info.eos)
                res.scales[s] = Continuation(_greedy_text(engine, p, max_tokens), div, kls,
                                             math.fsum(kls) / len(kls))
            results.append(res)
        if reference_text is not None:
            rtoks = engine.tokenize(reference_text, add_special=True)[:reference_tokens]
            if len(rtoks) < 2:
                raise PromptFileError(reference_name, "the reference text is shorter than 2 "
                                      "tokens")
            engine.remove_lora(apath)
            step("reference text: base")
            base_ppl = perplexity(engine, rtoks, m, ev)
            for s in scales:
                step(f"reference text: scale {s:g}")
                engine.set_lora(apath, s)
                ppl[s] = perplexity(engine, rtoks, m, ev)
            reference = {"path": reference_name, "n_tokens": len(rtoks),
                         "base_perplexity": base_ppl}
    finally:
        if prior is None:
            engine.remove_lora(apath)
        else:
            engine.set_lora(apath, prior)
    summaries = []
    for s in scales:
        per_set: dict[str, dict[str, float]] = {}
        for r in results:
            d = per_set.setdefault(r.prompt.set, {"mean_kl": 0.0, "diverged": 0,
                                                  "n_prompts": 0})
            d["mean_kl"] += r.scales[s].mean_kl
            d["diverged"] += r.scales[s].diverge_at is not None
            d["n_prompts"] += 1
        for d in per_set.values():
            d["mean_kl"] /= d["n_prompts"]
        summ = ScaleSummary(
            s, math.fsum(r.scales[s].mean_kl for r in results) / len(results),
            sum(r.scales[s].diverge_at is not None for r in results), len(results), per_set)
        if reference is not None:
            summ.perplexity = ppl[s]
            summ.perplexity_ratio = ppl[s] / reference["base_perplexity"]
        _verdict(summ, th)
        summaries.append(summ)
    rec, verdict = recommend(summaries)
    elapsed = time.perf_counter() - t0
    if progress is not None:
        progress(total, total, f"done in {elapsed:.1f} s")
    return Comparison(info.path, apath, caps.backend, m.name, max_tokens, th, results,
                      summaries, reference, rec, verdict,
                      {"seconds": elapsed, "logits_calls": ev.calls, "tokens_evaluated":
                       ev.tokens})


def parse_scales(text: str) -> list[float]:
    """``"0,0.5,1"`` -> [0.0, 0.5, 1.0] (ValueError naming the bad item)."""
    out = []
    for item in text.split(","):
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"--scales: {item.strip()!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"--scales: {item.strip()!r} is not finite")
        out.append(v)
    return out


def thresholds_from(options: Mapping[str, Any]) -> Thresholds:
    """Thresholds with the given fields replaced (None values keep the default)."""
    return Thresholds(**{k: v for k, v in options.items() if v is not None})
