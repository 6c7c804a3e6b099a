"""Data set statistics per split, the tokens-per-document histogram and the stage's metrics."""

from __future__ import annotations

import io
import statistics
from collections import Counter

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bmw.format.dataset import FormattedData
from bmw.format.split import SPLITS


def token_counts(texts: list[str], tokenizer) -> list[int]:
    """Tokens per text with a transformers tokenizer, without special tokens."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def summary(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "mean": 0.0, "median": 0.0, "max": 0, "total": 0}
    return {
        "min": min(values),
        "mean": round(statistics.fmean(values), 2),
        "median": float(statistics.median(values)),
        "max": max(values),
        "total": sum(values),
    }


def dataset_stats(data: FormattedData, tokens: dict[str, list[int]]) -> dict:
    """Per split: documents, rows (by style), characters and tokens per document; and the eval set sizes."""
    splits = {}
    for name in SPLITS:
        docs = data.documents[name]
        splits[name] = {
            "documents": len(docs),
            "rows": len(data.rows[name]),
            "rows_by_style": dict(sorted(Counter(r["style"] for r in data.rows[name]).items())),
            "characters": summary([len(d["text"]) for d in docs]),
            "tokens": summary(tokens[name]),
        }
    all_docs = [d for name in SPLITS for d in data.documents[name]]
    dates = sorted(d["date"] for d in all_docs)
    return {
        "splits": splits,
        "snapshot": {"first": dates[0], "last": dates[-1]} if dates else None,
        "cleaning": cleaning_summary(all_docs),
        "eval": {
            "prompts": len(data.prompts),
            "qa_reference": len(data.qa_reference),
            "mcqa": len(data.mcqa),
            "mcqa_by_type": dict(sorted(Counter(i["type"] for i in data.mcqa).items())),
            "mcqa_knowledge": len(data.mcqa_knowledge),
        },
    }


def metrics(stats: dict) -> dict:
    """The flat numbers DVC compares across experiments (`metrics/data.json`)."""
    out: dict = {}
    for name, s in stats["splits"].items():
        out[name] = {"documents": s["documents"], "rows": s["rows"], "tokens_total": s["tokens"]["total"],
                     "tokens_mean": s["tokens"]["mean"]}
    out["eval"] = {k: v for k, v in stats["eval"].items() if k != "mcqa_by_type"}
    return out


def histogram_png(tokens: dict[str, list[int]], bins: int = 30) -> bytes:
    """A PNG of tokens per document, one step histogram per split on shared bins; identical bytes on every run."""
    values = [v for name in SPLITS for v in tokens[name]]
    edges = np.histogram_bin_edges(values or [0, 1], bins=bins)
    fig = Figure(figsize=(7, 4), dpi=100)  # no pyplot: no global state, the Agg canvas directly
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in SPLITS:
        if tokens[name]:
            ax.hist(tokens[name], bins=edges, histtype="step", linewidth=1.5, label=f"{name} ({len(tokens[name])})")
    ax.set_xlabel("tokens per document")
    ax.set_ylabel("documents")
    ax.set_title("Tokens per document by split")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp in the bytes
    return buf.getvalue()


def cleaning_summary(docs: list[dict]) -> dict | None:
    """Totals of the clean stage's per-document `stats` that the documents carry; None when they carry none."""
    stats = [d["stats"] for d in docs if isinstance(d.get("stats"), dict)]
    if not stats:
        return None
    chars_in = sum(s.get("chars_in", 0) for s in stats)
    chars_out = sum(s.get("chars_out", 0) for s in stats)
    rules: Counter[str] = Counter()
    for s in stats:
        rules.update(s.get("rules") or {})
    return {"documents": len(stats), "chars_in": chars_in, "chars_out": chars_out,
            "removed_share": round(1 - chars_out / chars_in, 4) if chars_in else 0.0,
            "lines_removed": dict(sorted(rules.items()))}
