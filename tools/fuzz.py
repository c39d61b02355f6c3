"""Fuzz GGUF loading: mutate fixture models and adapters, load each through llamart.

``make_cases`` derives broken files from good ones with a fixed seed (bit flips, truncation,
inflated counts/lengths/dims, wrong value and tensor types, swapped tensors, duplicated keys,
odd hyperparameters).  ``run_cases`` loads them in a child process (``python -m
tools.fuzz --worker``), one after the other, and records each outcome:

  rejected   clean llamart/GGUF exception            loaded     accepted and evaluated
  crash      the child died (signal or abort)       hang       no answer within the timeout
  unexpected some other Python exception (a bug in llamart's error handling)

After a crash or hang the child is restarted with the remaining cases.  Pure Python (no numpy).
``run_cases(..., backend="wasm")`` validates here and loads the accepted files with the
WebAssembly module in Node instead (tools/fuzz_wasm.cjs, same line protocol).
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llamart.testing import mutate

from .pyodide_runner.paths import wasm_dir as wasm_build_dir

BAD_OUTCOMES = ("crash", "hang", "unexpected")


@dataclass
class Case:
    """One mutated file: where it is, what it was made from and how."""

    id: int
    path: str
    kind: str  # "model" or "adapter"
    source: str
    mutations: list[str] = field(default_factory=list)


@dataclass
class Result:
    id: int
    outcome: str
    detail: str = ""
    validated: bool | None = None  # did llamart.gguf accept it?
    seconds: float = 0.0


# ---- mutations: each edits data in place (or returns new bytes) and describes itself ----

_INTERESTING = [0, 1, 2, 3, 7, 8, 31, 32, 33, 63, 64, 255, 256, 4096, 65535, 65536,
                (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63,
                (1 << 64) - 1]


def _big(rng: random.Random) -> int:
    return rng.choice(_INTERESTING + [rng.getrandbits(64), rng.getrandbits(32)])


Mutation = Callable[[bytearray, mutate.Layout, random.Random], "tuple[bytearray, str] | None"]


def _bitflip(d: bytearray, lay: mutate.Layout, rng: random.Random) -> tuple[bytearray, str]:
    end = lay.header_end if rng.random() < 0.85 else len(d)
    n = rng.randint(1, 8)
    spots = sorted(rng.randrange(end) for _ in range(n))
    for pos in spots:
        d[pos] ^= 1 << rng.randrange(8)
    return d, f"bitflip x{n} at {spots[:4]}"


def _truncate(d: bytearray, lay: mutate.Layout, rng: random.Random) -> tuple[bytearray, str]:
    cut = rng.randrange(lay.header_end + 64) if rng.random() < 0.7 else rng.randrange(len(d))
    return d[:cut], f"truncate at {cut}"


def _inflate_count(d: bytearray, lay: mutate.Layout, rng: random.Random) -> tuple[bytearray, str]:
    v = _big(rng)
    choice = rng.randrange(4)
    if choice == 0:
        mutate.put_u64(d, mutate.N_TENSORS_AT, v)
        return d, f"n_tensors={v}"
    if choice == 1:
        mutate.put_u64(d, mutate.N_KV_AT, v)
        return d, f"n_kv={v}"
    arrays = [k for k in lay.keys if k.count_at is not None]
    if choice == 2 and arrays:
        k = rng.choice(arrays)
        mutate.put_u64(d, k.count_at or 0, v)
        return d, f"array '{k.name}' count={v}"
    strings = [(k.name, k.at) for k in lay.keys] + [(t.name, t.at) for t in lay.tensors]
    strings += [(k.name + "[value]", k.value_at) for k in lay.keys if k.vtype == mutate.STRING]
    strings += [(k.name + "[0]", k.first_len_at) for k in lay.keys if k.first_len_at]
    if not strings:
        mutate.put_u64(d, mutate.N_KV_AT, v)
        return d, f"n_kv={v}"
    name, at = rng.choice(strings)
    mutate.put_u64(d, at, v)
    return d, f"string length of '{name}'={v}"


def _tensor_dims(d: bytearray, lay: mutate.Layout, rng: random.Random
                 ) -> tuple[bytearray, str] | None:
    if not lay.tensors:
        return None
    t = rng.choice(lay.tensors)
    if rng.random() < 0.3 or not t.dims_at:
        v = rng.randrange(9)
        mutate.put_u32(d, t.n_dims_at, v)
        return d, f"'{t.name}' n_dims={v}"
    j = rng.randrange(len(t.dims_at))
    old = struct.unpack_from("<q", d, t.dims_at[j])[0]
    v = rng.choice([0, -1, old * 2, old + 1, old - 1, old // 2, _big(rng)])
    mutate.put_u64(d, t.dims_at[j], v)
    return d, f"'{t.name}' ne[{j}]={v}"


def _tensor_type(d: bytearray, lay: mutate.Layout, rng: random.Random
                 ) -> tuple[bytearray, str] | None:
    if not lay.tensors:
        return None
    t = rng.choice(lay.tensors)
    v = rng.choice(list(range(44)) + [_big(rng)])
    mutate.put_u32(d, t.type_at, v)
    return d, f"'{t.name}' ggml type={v}"


def _tensor_offset(d: bytearray, lay: mutate.Layout, rng: random.Random
                   ) -> tuple[bytearray, str] | None:
    if not lay.tensors:
        return None
    t = rng.choice(lay.tensors)
    old = struct.unpack_from("<Q", d, t.offset_at)[0]
    v = rng.choice([0, old + 32, max(old - 32, 0), old + 1, _big(rng)])
    mutate.put_u64(d, t.offset_at, v)
    return d, f"'{t.name}' offset={v}"


def _value_type(d: bytearray, lay: mutate.Layout, rng: random.Random
                ) -> tuple[bytearray, str] | None:
    if not lay.keys:
        return None
    k = rng.choice(lay.keys)
    v = rng.randrange(16)
    if k.item_type is not None and rng.random() < 0.5:
        mutate.put_u32(d, k.value_at, v)
        return d, f"array '{k.name}' item type={v}"
    mutate.put_u32(d, k.type_at, v)
    return d, f"key '{k.name}' type={v}"


def _swap_tensors(d: bytearray, lay: mutate.Layout, rng: random.Random
                  ) -> tuple[bytearray, str] | None:
    by_len: dict[int, list[mutate.TensorLayout]] = {}
    for t in lay.tensors:
        by_len.setdefault(len(t.name.encode()), []).append(t)
    groups = [g for g in by_len.values() if len(g) > 1]
    if not groups:
        return None
    a, b = rng.sample(rng.choice(groups), 2)
    mutate.rename_tensor(d, a, b.name)
    mutate.rename_tensor(d, b, a.name)
    return d, f"swap tensor names '{a.name}' <-> '{b.name}'"


def _duplicate(d: bytearray, lay: mutate.Layout, rng: random.Random
               ) -> tuple[bytearray, str] | None:
    if rng.random() < 0.5:
        items = [(k, k.name) for k in lay.keys]
        rename: Callable = mutate.rename_key
    else:
        items = [(t, t.name) for t in lay.tensors]
        rename = mutate.rename_tensor
    by_len: dict[int, list] = {}
    for obj, name in items:
        by_len.setdefault(len(name.encode()), []).append((obj, name))
    groups = [g for g in by_len.values() if len(g) > 1]
    if not groups:
        return None
    (a, a_name), (_, b_name) = rng.sample(rng.choice(groups), 2)
    rename(d, a, b_name)
    return d, f"duplicate name '{b_name}' (was '{a_name}')"


def _hparam(d: bytearray, lay: mutate.Layout, rng: random.Random) -> tuple[bytearray, str] | None:
    ints = [k for k in lay.keys if k.vtype in (4, 5)]  # u32 / i32 values: hparams, token ids
    floats = [k for k in lay.keys if k.vtype == 6]
    if floats and rng.random() < 0.25:
        k = rng.choice(floats)
        v = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30, -1e-30])
        struct.pack_into("<f", d, k.value_at, v)
        return d, f"'{k.name}'={v}"
    if not ints:
        return None
    k = rng.choice(ints)
    v = rng.choice([0, 1, 2, 3, 5, 1000, 65536, (1 << 31) - 1, (1 << 32) - 1, rng.getrandbits(32)])
    mutate.put_u32(d, k.value_at, v)
    return d, f"'{k.name}'={v}"


MUTATIONS: dict[str, Mutation] = {
    "bitflip": _bitflip,
    "truncate": _truncate,
    "inflate": _inflate_count,
    "dims": _tensor_dims,
    "tensor_type": _tensor_type,
    "offset": _tensor_offset,
    "value_type": _value_type,
    "swap": _swap_tensors,
    "duplicate": _duplicate,
    "hparam": _hparam,
}
_WEIGHTS = {"bitflip": 3, "truncate": 1, "inflate": 2, "dims": 2, "tensor_type": 1,
            "offset": 1, "value_type": 2, "swap": 1, "duplicate": 1, "hparam": 4}


def make_cases(sources: dict[str, tuple[str, str]], out_dir: str, n: int, seed: int
               ) -> list[Case]:
    """Write ``n`` mutated files into ``out_dir``.

    ``sources``: name -> (path, kind) of good files to mutate (kind "model" or "adapter").
    The same seed and sources give the same files.
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(seed)
    originals = {}
    for name, (path, kind) in sorted(sources.items()):
        with open(path, "rb") as f:
            data = f.read()
        originals[name] = (data, mutate.layout(data), kind)
    names = sorted(originals)
    kinds = list(_WEIGHTS)
    weights = [_WEIGHTS[k] for k in kinds]
    cases = []
    for i in range(n):
        src = rng.choice(names)
        data, lay, kind = originals[src]
        d = bytearray(data)
        done: list[str] = []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            m = rng.choices(kinds, weights)[0]
            cur_lay = lay if not done else _safe_layout(d)
            if cur_lay is None:
                break
            res = MUTATIONS[m](d, cur_lay, rng)
            if res is not None:
                d, desc = res
                done.append(desc)
        if not done:
            d, desc = _bitflip(d, lay, rng)
            done.append(desc)
        path = os.path.join(out_dir, f"case_{i:05d}_{src}.gguf")
        with open(path, "wb") as f:
            f.write(d)
        cases.append(Case(i, path, kind, src, done))
    return cases


def _safe_layout(d: bytearray) -> mutate.Layout | None:
    try:
        lay = mutate.layout(d)
    except Exception:  # an earlier mutation broke the structure: stop stacking
        return None
    return lay if lay.header_end <= len(d) else None


# ---- the worker (child process) ----

def _worker(base_model: str) -> int:
    """Read 'id\\tkind\\tpath' lines on stdin; print one JSON result line per case."""
    from llamart import Engine, LlamartError
    from llamart import gguf as gr
    from llamart.gguf.c_scan import c_string_scan

    engine = Engine(backend="native")
    base_header = gr.read_header(base_model)
    engine.load_model(base_model, n_ctx=64, n_batch=64, n_threads=1)
    base_loaded = True
    for line in sys.stdin:
        cid, kind, path = line.rstrip("\n").split("\t", 2)
        print(f"--- case {cid}", file=sys.stderr, flush=True)
        print(json.dumps({"start": int(cid)}), flush=True)
        t0 = time.perf_counter()
        res: dict[str, object] = {"id": int(cid)}
        try:
            if kind == "model":
                gr.validate_model(path, scan=c_string_scan())
            else:
                gr.validate_adapter(path, base_header)
            res["validated"] = True
        except (gr.GGUFError, OSError):
            res["validated"] = False
        except Exception as e:  # noqa: BLE001 - the validator must not fail this way
            res["validated"] = False
            res.update(outcome="unexpected", detail=f"validator: {type(e).__name__}: {e}")
        if "outcome" not in res:
            try:
                if kind == "model":
                    base_loaded = False
                    engine.load_model(path, n_ctx=64, n_batch=64, n_threads=1)
                    engine.logits("hello world")
                    engine.complete("the", max_tokens=2, temperature=0.0)
                else:
                    if not base_loaded:
                        engine.load_model(base_model, n_ctx=64, n_batch=64, n_threads=1)
                        base_loaded = True
                    engine.set_lora(path, 1.0)
                    engine.logits("hello world")
                    engine.clear_loras()
                res.update(outcome="loaded")
            except (LlamartError, FileNotFoundError) as e:
                res.update(outcome="rejected", detail=f"{type(e).__name__}: {e}"[:300])
            except Exception as e:  # noqa: BLE001
                res.update(outcome="unexpected", detail=f"{type(e).__name__}: {e}"[:300])
        res["seconds"] = round(time.perf_counter() - t0, 4)
        print(json.dumps(res), flush=True)
    engine.dispose()
    return 0


# ---- the parent ----

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout (tools/..)
WASM_WORKER = os.path.join(REPO, "tools", "fuzz_wasm.cjs")


def run_cases(cases: Sequence[Case], base_model: str, *, timeout: float = 60.0,
              log: Callable[[str], None] | None = None, backend: str = "native",
              wasm_dir: str | None = None, raw: bool = False) -> list[Result]:
    """Run every case in child workers (restarted after a crash or hang).

    ``backend="native"``: each case goes through the native Engine (which validates it first).
    ``backend="wasm"``: each case is validated here with llamart.gguf, as the Engine does in
    Pyodide, and the files it accepts are loaded by the WebAssembly module in one Node process
    (tools/fuzz_wasm.cjs, module built in ``wasm_dir``); refused files never reach llama.cpp
    and count as "rejected".  ``raw=True`` sends every file to the module regardless, to see
    what validation blocks (a crash of a refused file is then not counted as bad by
    ``summarize``).
    """
    if backend == "native":
        cmd = [sys.executable, "-m", "tools.fuzz", "--worker", base_model]
        return _run_workers(cases, cmd, {}, timeout, log)
    if backend != "wasm":
        raise ValueError(f"backend must be 'native' or 'wasm', not {backend!r}")
    wasm_dir = wasm_dir or str(wasm_build_dir())
    checked = {c.id: _validate_case(c, base_model) for c in cases}
    done: dict[int, Result] = {}
    send: list[Case] = []
    for c in cases:
        ok, detail = checked[c.id]
        if ok is None:  # the validator failed in an unexpected way: a bug in llamart
            done[c.id] = Result(c.id, "unexpected", detail, False)
        elif ok or raw:
            send.append(c)
        else:
            done[c.id] = Result(c.id, "rejected", detail, False)
    cmd = ["node", WASM_WORKER, wasm_dir, base_model]
    known = {cid: ok for cid, (ok, _) in checked.items()}
    for r in _run_workers(send, cmd, known, timeout, log):
        done[r.id] = r
    return [done[c.id] for c in cases]


def _validate_case(case: Case, base_model: str) -> tuple[bool | None, str]:
    """(accepted?, reason) from llamart.gguf; None when it raised something unexpected."""
    from llamart import gguf as gr
    from llamart.gguf.c_scan import c_string_scan

    try:
        if case.kind == "model":
            gr.validate_model(case.path, scan=c_string_scan())
        else:
            gr.validate_adapter(case.path, gr.read_header(base_model))
        return True, ""
    except (gr.GGUFError, OSError) as e:
        return False, f"{type(e).__name__}: {e}"[:300]
    except Exception as e:  # noqa: BLE001 - the validator must not fail this way
        return None, f"validator: {type(e).__name__}: {e}"[:300]


def _run_workers(cases: Sequence[Case], cmd: list[str], validated: dict[int, bool | None],
                 timeout: float, log: Callable[[str], None] | None) -> list[Result]:
    """Feed cases to worker processes speaking the start/result JSON-line protocol."""
    import selectors
    import signal
    import subprocess
    import tempfile

    results: dict[int, Result] = {}
    pending = list(cases)
    env = dict(os.environ, GGML_NO_BACKTRACE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    while pending:
        by_id = {c.id: c for c in pending}
        # stderr goes to a file: an undrained pipe fills up (64 KiB of llama.cpp log) and
        # blocks the worker, which would then look like a hang
        errfile = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errfile,
            text=True, env=env, bufsize=1)
        assert proc.stdin is not None and proc.stdout is not None
        feed = "".join(f"{c.id}\t{c.kind}\t{c.path}\n" for c in pending)
        _feed_async(proc, feed)
        current, started_at = None, time.monotonic()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        hung = False
        while True:
            left = timeout - (time.monotonic() - started_at)
            if left <= 0 or not sel.select(left):
                hung = True
                break
            line = proc.stdout.readline()
            if not line:
                break
            msg = json.loads(line)
            if "start" in msg:
                current, started_at = msg["start"], time.monotonic()
                continue
            r = Result(msg["id"], str(msg["outcome"]), str(msg.get("detail", "")),
                       msg.get("validated", validated.get(msg["id"])),
                       float(msg.get("seconds", 0.0)))
            results[r.id] = r
            current = None
            if log:
                log(f"case {r.id}: {r.outcome} {r.detail[:100]}")
        sel.close()
        if hung:
            proc.kill()
        proc.wait()
        errfile.seek(0)
        err = errfile.read()[-4000:]
        errfile.close()
        for s in (proc.stdin, proc.stdout):
            s.close()
        pending = [c for c in pending if c.id not in results]
        if current is None and pending and not hung:
            # the worker died before starting a case (e.g. import or base model failure)
            raise RuntimeError(f"fuzz worker failed (exit {proc.returncode}): {err}")
        if current is not None or hung:
            cid = current if current is not None else pending[0].id
            outcome = "hang" if hung else "crash"
            rc = proc.returncode
            sig = -rc if rc is not None and rc < 0 else None
            detail = (f"signal {signal.Signals(sig).name}" if sig else f"exit {rc}")
            tail = err.rsplit(f"--- case {cid}\n", 1)[-1].strip().splitlines()[-3:]
            results[cid] = Result(cid, outcome, f"{detail}; {' | '.join(tail)}"[:500],
                                  validated.get(cid))
            if log:
                log(f"case {cid}: {outcome} {detail} ({by_id[cid].mutations})")
            pending = [c for c in pending if c.id != cid]
    return [results[c.id] for c in cases]


def _feed_async(proc: Any, text: str) -> None:
    """Write the case list without blocking the reader (the pipe may fill up)."""
    import threading

    def feed() -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(text)
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    threading.Thread(target=feed, daemon=True).start()


def summarize(cases: Sequence[Case], results: Sequence[Result], seed: int) -> dict[str, object]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    by_id = {c.id: c for c in cases}
    bad = [dict(asdict(by_id[r.id]), **asdict(r)) for r in results if _is_bad(r)]
    blocked = sum(1 for r in results if r.outcome in BAD_OUTCOMES and not _is_bad(r))
    accepted_by_validator_but_rejected = sum(
        1 for r in results if r.validated and r.outcome == "rejected")
    return {
        "seed": seed,
        "cases": len(results),
        "counts": counts,
        "validator_passed_llama_rejected": accepted_by_validator_but_rejected,
        "crashes_blocked_by_validator": blocked,  # only seen with run_cases(raw=True)
        "bad": bad,
        "results": [dict(asdict(by_id[r.id]), **asdict(r)) for r in results],
    }


def _is_bad(r: Result) -> bool:
    """A crash or hang counts unless the validator had refused the file (raw runs only: the
    Engine never hands such a file to llama.cpp)."""
    if r.outcome in ("crash", "hang") and r.validated is False:
        return False
    return r.outcome in BAD_OUTCOMES


def fixture_sources(fx: dict[str, str]) -> dict[str, tuple[str, str]]:
    """The good fixtures worth mutating, with their kind."""
    out = {}
    for name in ("model_f32", "model_f16", "model_q8_0"):
        if name in fx:
            out[name] = (fx[name], "model")
    for name in ("lora_a", "lora_b", "lora_c"):
        if name in fx:
            out[name] = (fx[name], "adapter")
    return out


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) >= 2 and args[0] == "--worker":
        return _worker(args[1])
    print("usage: python -m tools.fuzz --worker BASE_MODEL  "
          "(see python -m tools.fuzz_gguf)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
