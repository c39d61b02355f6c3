"""Child process for one llama-cpp-python measurement, run by the bench venv's Python:
``.cache/bench-venv/bin/python bench/worker_llama_cpp_python.py JOB_JSON``.

Standalone (stdlib + llama_cpp). Same procedure as bench/llamart_job.py: load, warm-up prompt
run + one token, then timed prompt processing (``Llama.eval`` from a clean state) and a timed
greedy generation (``create_completion`` from a one-token prompt: ``n_gen`` decodes).
"""

from __future__ import annotations

import json
import sys
import time

clock = time.perf_counter


def _generate(llm, bos: int, n_gen: int) -> tuple[float, int]:
    llm.reset()
    started = clock()
    out = llm.create_completion([bos], max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0)
    return clock() - started, int(out["usage"]["completion_tokens"])


def main() -> None:
    job = json.loads(sys.argv[1])
    from llama_cpp import Llama

    started = clock()
    llm = Llama(model_path=job["model"], n_ctx=job["n_ctx"], n_batch=job["n_batch"],
                n_ubatch=job["n_batch"], n_threads=job["n_threads"],
                n_threads_batch=job["n_threads"], verbose=False)
    load_s = clock() - started
    prompt, bos = job["prompt"], job["prompt"][0]
    # as llama-bench: the pp test (a warm-up, then its reps back to back), then the tg test
    llm.reset()
    llm.eval(prompt)
    pp_s, tg_s, produced = [], [], []
    for _ in range(job.get("reps", 1)):
        llm.reset()
        started = clock()
        llm.eval(prompt)
        pp_s.append(clock() - started)
    _generate(llm, bos, 1)
    for _ in range(job.get("reps", 1)):
        elapsed, n = _generate(llm, bos, job["n_gen"])
        tg_s.append(elapsed)
        produced.append(n)
    print("BENCH-RESULT " + json.dumps({"load_s": load_s, "pp_s": pp_s, "tg_s": tg_s,
                                        "tg_tokens": produced}), flush=True)


if __name__ == "__main__":
    main()
