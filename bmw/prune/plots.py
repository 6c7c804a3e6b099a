"""The per-layer score plot of the prune stage, with the layers each plan removes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bmw.io import write_bytes  # noqa: E402


def layer_score_rows(block_influence: list[float], angular: list[float]) -> list[dict]:
    """dvc plot rows: one per layer; angular is the one-layer distance (block size 1)."""
    return [{"layer": i, "block_influence": round(b, 6), "angular": round(a, 6)}
            for i, (b, a) in enumerate(zip(block_influence, angular, strict=True))]


def plot_layer_scores(rows: list[dict], path: str | Path, title: str, removed: dict[str, list[int]]) -> None:
    """The scores per layer and, in a strip below, one row per plan: the layers it removes (`removed`, by type)."""
    fig, (ax, strip) = plt.subplots(2, 1, sharex=True, figsize=(8, 3.7 + 0.3 * len(removed)), dpi=100,
                                    height_ratios=(3.5, 0.3 * len(removed) + 0.2))
    layers = [r["layer"] for r in rows]
    ax.plot(layers, [r["block_influence"] for r in rows], marker="o", ms=3, label="block influence (ShortGPT)")
    ax.plot(layers, [r["angular"] for r in rows], marker="s", ms=3, label="angular distance, 1 layer")
    ax.set_ylabel("score (low = redundant)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    for row, (model_type, chosen) in enumerate(removed.items()):
        strip.scatter(chosen, [row] * len(chosen), marker="s", s=18, color=f"C{row + 2}")  # C0, C1: the curves
    strip.set_yticks(range(len(removed)), [f"{t}: {len(chosen)} removed" for t, chosen in removed.items()],
                     fontsize=8)
    strip.set_ylim(len(removed) - 0.5, -0.5)  # the first plan on top
    strip.set_xlabel("decoder layer")
    strip.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: same bytes every run
    plt.close(fig)
    write_bytes(path, buf.getvalue())
