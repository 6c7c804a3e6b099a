"""Read what train@variant and eval@variant wrote into one record per variant (all figures, not only the metrics)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from bmw.io import read_jsonl


@dataclass
class VariantResult:
    name: str
    train: dict = field(default_factory=dict)
    eval: dict = field(default_factory=dict)
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    generations: list[dict] = field(default_factory=list)

    def get(self, path: str, default=None):
        """A nested metric by dotted path, e.g. `eval.perplexity.ppl`."""
        node: object = {"train": self.train, "eval": self.eval}
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _curve(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    value = next((k for k in (rows[0].keys() if rows else []) if k not in ("step", "timestamp")), None)
    return [(int(r["step"]), float(r[value])) for r in rows] if value else []


def collect(variants: list[str], metrics_dir: Path = Path("metrics")) -> list[VariantResult]:
    results = []
    for name in variants:
        train_dir, eval_dir = metrics_dir / "train" / name, metrics_dir / "eval" / name
        gens = eval_dir / "generations.jsonl"
        results.append(
            VariantResult(
                name=name,
                train=_json(train_dir / "run.json") | _json(train_dir / "metrics.json"),
                eval=_json(eval_dir / "details.json"),
                train_curve=_curve(train_dir / "plots" / "metrics" / "loss.tsv"),
                eval_curve=_curve(train_dir / "plots" / "metrics" / "eval" / "loss.tsv"),
                generations=read_jsonl(gens) if gens.exists() else [],
            )
        )
    return results
