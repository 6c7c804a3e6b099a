"""`bmw bench model --loss-curve N`: does FP8 training, or training with compiled layers, stay within the noise of
the bf16 path's?

Per method, on the same bigram data (something to learn for N steps): the project's path in bf16, the candidates
(the same run with FP8 linears, one per recipe; under `--ablate-compile`, with the other setting of `train.compile`
than auto's: eager where the layers compile, compiled where they do not), and bf16 again with
another trainer seed (the data order, and for LoRA the adapter's initialisation): how far two bf16 runs differ by
chance is the noise the candidates are measured against.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from statistics import fmean

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.model.train import RunSpec, compiled

NOISE_SEED = 1  # the reference runs use the trainer's seed 0


def curve_runs(projects: list[RunSpec], steps: int, recipes: list[str], flip_compile: bool = False) -> list[RunSpec]:
    """For each project run (one per method): bf16, FP8 for each of `recipes`, bf16 reseeded; `steps` in all.
    `flip_compile`: with the bf16 run under the other setting of train.compile than the reference's (auto) too."""
    runs = []
    for spec in projects:
        reference = replace(spec, bigram=True, steps=steps - spec.warmup)
        flipped = [replace(reference, compile=not compiled(reference))] if flip_compile else []
        runs += [reference, *(replace(reference, fp8=r) for r in recipes), *flipped,
                 replace(reference, seed=NOISE_SEED)]
    return runs


def compare(runs: list[dict], window: int) -> dict:
    """Per method, over the last `window` steps: each run's mean loss, and each other run's mean |loss - the bf16
    run's loss| per step; `noise` is the reseeded bf16 run's, `within_noise` whether each candidate's (FP8,
    compiled) is no larger. The reseeded run also sees other batches, which the candidates share with the bf16 run:
    a lenient bar, so compare the mean losses too. Failed runs (no losses) are left out."""
    found = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method and r.get("losses")]
        reference = next((r for r in mine if not candidate(r) and not r["seed"]), None)
        if reference is None:
            continue
        tail = reference["losses"][-window:]
        diffs = {r["run"]: fmean(abs(a - b) for a, b in zip(r["losses"][-window:], tail)) for r in mine
                 if r is not reference}
        noise = next((diffs[r["run"]] for r in mine if r["seed"] and not candidate(r)), None)
        found[method] = {
            "reference": reference["run"], "window": len(tail),
            "mean_loss": {r["run"]: fmean(r["losses"][-window:]) for r in mine},
            "mean_abs_diff": diffs, "noise": noise,
            "within_noise": {r["run"]: noise is not None and diffs[r["run"]] <= noise for r in mine if candidate(r)},
        }
    return found


def candidate(run: dict) -> bool:
    """Whether a run is one of the changes measured against bf16's noise (FP8, train.compile other than auto)."""
    return bool(run["fp8"]) or run["compile"] != "auto"


def label(run: dict) -> str:
    layers = "compiled" if run["compiled_layers"] else "eager"
    return (f"fp8 {run['fp8']}" if run["fp8"] else "bf16") + f", {layers}" + (f", seed {run['seed']}" if run["seed"]
                                                                              else "")


def plot(runs: list[dict], summary: dict, path: Path) -> Path:
    """Every run's per-step loss, one panel per method, the comparison of `summary` in each title."""
    methods = list(summary)
    fig = Figure(figsize=(6.5 * max(len(methods), 1), 4.2))
    FigureCanvasAgg(fig)
    for ax, method in zip(fig.subplots(1, max(len(methods), 1), squeeze=False)[0], methods):
        for r in (r for r in runs if r["method"] == method and r.get("losses")):
            ax.plot(range(1, len(r["losses"]) + 1), r["losses"], linewidth=0.9, alpha=0.85, label=label(r))
        s = summary[method]
        tried = ", ".join(f"{d:.4f}" for name, d in s["mean_abs_diff"].items() if name in s["within_noise"])
        noise = "failed" if s["noise"] is None else f"{s['noise']:.4f}"
        ax.set_title(f"{method}: mean |Δloss| vs bf16, last {s['window']} steps:\ncandidates {tried}; bf16 "
                     f"reseeded {noise}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    return path
