"""``llamart lora compare MODEL ADAPTER --prompts FILE ...``: the parser and the command.

Progress goes to stderr, the report to stdout; exit 1 on any error, including a backend that
cannot apply LoRA (the comparison would otherwise measure the base model against itself).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from . import compare as cmp
from .prompts import load_prompts, read_text

HELP = "measure an adapter's drift from the base across scales, and recommend a range"


def _engine(backend: str | None) -> Any:
    from ..engine import Engine

    return Engine(backend)


class _Progress:
    """One updating line on a terminal, else a line per step."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int, what: str) -> None:
        line = f"[{done}/{total} {time.perf_counter() - self.t0:6.1f} s] {what}"
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if done == total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _scales_arg(text: str) -> list[float]:
    try:
        return cmp.parse_scales(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--scales: ")) from None


def add_parser(sub: Any, backend_help: str) -> argparse.ArgumentParser:
    """Register ``compare`` on the ``lora`` sub-command parser."""
    th = cmp.Thresholds()
    p = sub.add_parser("compare", help=HELP, description=HELP + ". " + (
        "The adapter acts at a scale when its greedy text differs from the base's on at least "
        "--act-fraction of the prompts or its mean KL reaches --act-kl; it over-steers when the "
        "reference perplexity exceeds (1 + --max-ppl-rise) x the base's or its mean KL "
        "exceeds --max-kl."))
    p.add_argument("model", metavar="MODEL")
    p.add_argument("adapter", metavar="ADAPTER")
    p.add_argument("--prompts", metavar="FILE", action="append", required=True,
                   help="golden prompts: a text file (one per line) or JSONL "
                   "({\"messages\": [...]} chats or {\"prompt\": ...}); repeat for more "
                   "prompt sets")
    p.add_argument("--scales", type=_scales_arg, metavar="LIST",
                   default=list(cmp.DEFAULT_SCALES),
                   help="comma-separated scales (default 0,0.25,0.5,0.75,1,1.5)")
    p.add_argument("--reference-text", metavar="FILE",
                   help="a text whose perplexity is measured at each scale")
    p.add_argument("--reference-tokens", type=int, default=cmp.DEFAULT_REFERENCE_TOKENS,
                   metavar="N", help="use the first N tokens of the reference text (cost "
                   f"grows as N^2; default {cmp.DEFAULT_REFERENCE_TOKENS})")
    p.add_argument("--max-tokens", type=int, default=cmp.DEFAULT_MAX_TOKENS, metavar="N",
                   help=f"greedy tokens per prompt (default {cmp.DEFAULT_MAX_TOKENS})")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG plot (needs matplotlib)")
    p.add_argument("--act-fraction", type=float, metavar="F",
                   help=f"acts: share of prompts with changed text (default {th.act_fraction})")
    p.add_argument("--act-kl", type=float, metavar="NATS",
                   help=f"acts: mean KL at least this (default {th.act_kl})")
    p.add_argument("--max-ppl-rise", type=float, metavar="X",
                   help=f"over-steers: reference perplexity above (1+X) x base "
                   f"(default {th.max_ppl_rise})")
    p.add_argument("--max-kl", type=float, metavar="NATS",
                   help=f"over-steers: mean KL above this (default {th.max_kl})")
    p.add_argument("--n-ctx", type=int, default=1024, metavar="N")
    p.add_argument("--threads", type=int, default=None, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--backend", choices=("native", "wasm"), default=None, help=backend_help)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from . import report

    thresholds = cmp.thresholds_from({k: getattr(args, k) for k in
                                      ("act_fraction", "act_kl", "max_ppl_rise", "max_kl")})
    if args.reference_tokens < 2:
        raise ValueError("--reference-tokens must be at least 2")
    prompts = [p for path in args.prompts for p in load_prompts(path)]
    reference = read_text(args.reference_text, "reference text") if args.reference_text \
        else None
    for path in (args.model, args.adapter):
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "No such file", path)
    for out in (args.json, args.plot):  # fail now, not after the measurement
        folder = os.path.dirname(os.path.abspath(out)) if out else None
        if folder and not os.path.isdir(folder):
            raise FileNotFoundError(2, "No such directory", folder)
    if args.plot:
        report.pyplot()
    with _engine(args.backend) as engine:
        cmp.require_lora(engine)  # before loading anything: refuse at once
        engine.load_model(args.model, n_ctx=args.n_ctx, n_threads=args.threads)
        result = cmp.compare(
            engine, args.adapter, prompts, args.scales, reference_text=reference,
            reference_name=args.reference_text or "reference", max_tokens=args.max_tokens,
            reference_tokens=args.reference_tokens, thresholds=thresholds,
            progress=None if args.quiet else _Progress(sys.stderr))
    print(report.format_report(result))
    t = result.timing
    print(f"\n[{t['seconds']:.1f} s; {t['logits_calls']} logits calls evaluating "
          f"{t['tokens_evaluated']} tokens; {result.math} math]")
    if args.json:
        report.write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        report.write_plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
