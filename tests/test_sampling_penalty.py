"""The repetition penalty (backends/sampling.cpp keeps it outside llama.cpp's sampler chain, on
the window's tokens only) against a reference computation of llama.cpp's rule
(llama_sampler_penalties_apply: a logit <= 0 is multiplied by the penalty, else divided, for
every token among the last ``repeat_last_n`` of prompt + output), in float32 as llama.cpp
computes it, step by step from a lone engine's logits. Greedy, and sampled with top_k=1 (the
candidates path: deterministic, the largest penalised logit). Lone and parallel engines.
"""

from __future__ import annotations

from array import array

import pytest

from llamart import Engine

N = 16


def _f32(x: float) -> float:
    return array("f", [x])[0]


def _reference(ref: Engine, prompt: str, penalty: float, last_n: int) -> list[int]:
    info = ref.model_info
    assert info is not None
    p = _f32(penalty)
    history = ref.tokenize(prompt)
    out: list[int] = []
    for _ in range(N):
        logits = list(ref.logits(history))
        for t in set(history[-last_n:]):
            x = logits[t]
            logits[t] = _f32(x * p) if x <= 0 else _f32(x / p)
        best = max(range(len(logits)), key=lambda i: (logits[i], -i))  # the first maximum
        if best == info.eos:
            break
        out.append(best)
        history.append(best)
    return out


@pytest.mark.parametrize("n_parallel", [1, 2])
@pytest.mark.parametrize("sampling", [{"temperature": 0.0},
                                      {"temperature": 0.8, "top_k": 1}],
                         ids=["greedy", "candidates"])
@pytest.mark.parametrize("penalty, last_n", [(1.3, 8), (1.5, 64), (0.7, 5)])
def test_penalty_matches_llama_cpps_rule(fx: dict[str, str], n_parallel: int,
                                         sampling: dict[str, float], penalty: float,
                                         last_n: int) -> None:
    prompt = "abc abc abc the the"
    with Engine() as ref, Engine() as engine:
        ref.load_model(fx["model_f32"], n_ctx=256, n_threads=1)
        engine.load_model(fx["model_f32"], n_ctx=256, n_threads=1, n_parallel=n_parallel)
        want = _reference(ref, prompt, penalty, last_n)
        got = engine.generate(prompt, max_tokens=N, seed=3, repeat_penalty=penalty,
                              repeat_last_n=last_n, **sampling)
        pieces = "".join(got)
        # the reference's tokens as text, the way a generation streams them
        want_text = b"".join(ref._backend.token_to_piece(t) for t in want)  # noqa: SLF001
        assert pieces == want_text.decode("utf-8", "replace")
        # and the penalty changed something (else this would test plain greedy)
        plain = "".join(engine.generate(prompt, max_tokens=N, temperature=0.0,
                                        repeat_penalty=1.0))
        if penalty != 1.0 and last_n >= 8:
            assert plain != pieces
