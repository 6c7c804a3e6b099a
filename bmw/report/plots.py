"""PNG plots for the report (matplotlib, Agg, no timestamps in the files so they are reproducible)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bmw.report.collect import VariantResult  # noqa: E402

PNG_METADATA = {"Software": None}


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    return path


def loss_curves(results: list[VariantResult], path: Path) -> Path | None:
    """Every variant's train (solid) and validation (dashed) loss on one plot."""
    trained = [r for r in results if r.train_curve or r.eval_curve]
    if not trained:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, r in enumerate(trained):
        color = f"C{i}"
        if r.train_curve:
            ax.plot(*zip(*r.train_curve), color=color, label=f"{r.name} train")
        if r.eval_curve:
            ax.plot(*zip(*r.eval_curve), color=color, linestyle="--", marker="o", markersize=3, label=f"{r.name} val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def metric_bars(results: list[VariantResult], metrics: list[tuple[str, str]], path: Path) -> Path | None:
    """One panel per metric (title, dotted path), one bar per variant."""
    panels = [(title, p) for title, p in metrics if any(isinstance(r.get(p), (int, float)) for r in results)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    names = [r.name for r in results]
    for ax, (title, p) in zip(axes[0], panels):
        values = [r.get(p) if isinstance(r.get(p), (int, float)) else 0.0 for r in results]
        ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def mcqa_by_type(results: list[VariantResult], path: Path) -> Path | None:
    types = sorted({k for r in results for k in (r.get("eval.mcqa.by_type") or {})})
    if not types:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(results), 1)
    for i, r in enumerate(results):
        by_type = r.get("eval.mcqa.by_type") or {}
        xs = [j + i * width for j in range(len(types))]
        ax.bar(xs, [by_type.get(t, {}).get("acc", 0.0) for t in types], width, label=r.name, color=f"C{i}")
    ax.set_xticks([j + width * (len(results) - 1) / 2 for j in range(len(types))], types)
    ax.set_ylabel("accuracy")
    ax.set_title("Multiple-choice accuracy by question type")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
