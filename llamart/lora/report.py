"""The reports of a :class:`~llamart.lora.compare.Comparison`: terminal table, JSON, PNG plot.

The plot needs matplotlib (``pip install 'llamart[plot]'``), imported only when a plot is made.
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Any

from ..errors import LlamartError
from .compare import Comparison, ScaleSummary


def _short(text: str, width: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def _state(s: ScaleSummary) -> str:
    if s.over_steers:
        return "over-steers: " + "; ".join(r.split(": ", 1)[1] for r in s.reasons
                                          if r.startswith("over-steers"))
    return "acts" if s.acts else "quiet"


def format_summary(c: Comparison) -> str:
    """The per-scale table and the recommendation."""
    sets = c.sets
    n = len(c.prompts)
    head = (f"adapter {c.adapter}\n  on {c.model} ({c.backend} backend; {n} prompt"
            f"{'s' if n != 1 else ''} in {len(sets)} set{'s' if len(sets) != 1 else ''}; "
            f"{c.max_tokens} greedy tokens; KL(base||adapter) in nats/token)")
    if c.reference:
        head += (f"\n  reference text {c.reference['path']}: {c.reference['n_tokens']} tokens, "
                 f"base perplexity {c.reference['base_perplexity']:.3f}")
    cols = ["scale", "changed", "1st diff", "mean KL"]
    if len(sets) > 1:
        cols += [f"KL {name}" for name in sets]
    if c.reference:
        cols += ["ref ppl", "x base"]
    cols.append("verdict")
    rows = []
    for s in c.summaries:
        firsts = [p.scales[s.scale].diverge_at for p in c.prompts
                  if p.scales[s.scale].diverge_at is not None]
        row = [f"{s.scale:g}", f"{s.diverged}/{s.n_prompts}",
               f"{statistics.median(firsts):g}" if firsts else "-", f"{s.mean_kl:.4f}"]
        if len(sets) > 1:
            row += [f"{s.sets[name]['mean_kl']:.4f}" for name in sets]
        if c.reference:
            assert s.perplexity is not None and s.perplexity_ratio is not None
            row += [f"{s.perplexity:.3f}", f"{s.perplexity_ratio:.3f}"]
        row.append(_state(s))
        rows.append(row)
    widths = [max(len(r[i]) for r in [cols, *rows]) for i in range(len(cols) - 1)]
    lines = [head, ""]
    for r in [cols, *rows]:
        cells = [v.rjust(w) for v, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, r[-1]]))
    lines += ["", "  changed: prompts whose greedy text differs from the base's; 1st diff: "
              "median index of the first differing token", "",
              f"recommended: {c.verdict}"]
    return "\n".join(lines)


def format_continuations(c: Comparison, width: int = 96) -> str:
    """Each prompt's base continuation and its continuation at every scale."""
    lines = []
    for i, p in enumerate(c.prompts, 1):
        lines.append(f"[{i}] {p.prompt.set}:{p.prompt.line} ({p.prompt.kind}, "
                     f"{p.n_prompt_tokens} tokens) {_short(p.prompt.label, width - 20)!r}")
        w = max(len(f"{s:g}") for s in p.scales) + 7
        lines.append(f"  {'base':<{w}}{_short(p.base.text, width - w)}")
        for s, cont in p.scales.items():
            tag = f"{s:g}" + (f" @{cont.diverge_at}" if cont.diverge_at is not None else " =")
            text = "(same as base)" if cont.text == p.base.text else cont.text
            lines.append(f"  {tag:<{w}}{_short(text, width - w)}")
    return "\n".join(lines)


def format_report(c: Comparison) -> str:
    """Continuations, then the summary table (what the CLI prints)."""
    return format_continuations(c) + "\n\n" + format_summary(c)


def write_json(c: Comparison, path: str | os.PathLike[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(c.to_dict(), f, indent=1, ensure_ascii=False)
        f.write("\n")


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise LlamartError("a plot needs matplotlib: pip install 'llamart[plot]' "
                           "(or matplotlib)") from e
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def write_plot(c: Comparison, path: str | os.PathLike[str]) -> None:
    """A PNG: mean KL, share of changed prompts and reference perplexity against scale, one
    line per prompt set; the recommended range shaded."""
    plt = pyplot()
    panels = 3 if c.reference else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), constrained_layout=True)
    scales = [s.scale for s in c.summaries]
    for name in c.sets:
        axes[0].plot(scales, [s.sets[name]["mean_kl"] for s in c.summaries], "o-", label=name)
        axes[1].plot(scales, [s.sets[name]["diverged"] / s.sets[name]["n_prompts"]
                              for s in c.summaries], "o-", label=name)
    axes[0].axhline(c.thresholds.act_kl, color="grey", ls=":", lw=1, label="acts from")
    axes[0].set(xlabel="scale", ylabel="mean KL(base || adapter), nats/token",
                title="drift along the base's continuation")
    axes[1].axhline(c.thresholds.act_fraction, color="grey", ls=":", lw=1, label="acts from")
    axes[1].set(xlabel="scale", ylabel="share of prompts", ylim=(-0.05, 1.05),
                title="greedy text differs from base")
    if c.reference:
        axes[2].plot(scales, [s.perplexity for s in c.summaries], "o-", color="C3",
                     label=c.reference["path"])
        base = c.reference["base_perplexity"]
        axes[2].axhline(base, color="grey", lw=1, label="base")
        axes[2].axhline(base * (1 + c.thresholds.max_ppl_rise), color="grey", ls=":", lw=1,
                        label="over-steers above")
        axes[2].set(xlabel="scale", ylabel="perplexity", title="reference text")
        values = [s.perplexity or base for s in c.summaries] + [base]
        if max(values) > 10 * min(values):
            axes[2].set_yscale("log")
    for ax in axes:
        if c.recommended:
            ax.axvspan(*c.recommended, color="C2", alpha=0.12, lw=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{os.path.basename(c.adapter)}: recommended scales "
                 + (f"{c.recommended[0]:g}-{c.recommended[1]:g}" if c.recommended else "none"),
                 fontsize=10)
    fig.savefig(os.fspath(path), format="png", dpi=100)
    plt.close(fig)
