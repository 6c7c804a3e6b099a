"""format: filtered documents -> ChatML rows per split, held-out eval sets, stats, plot and data set card.

python -m stages.format
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bmw.format import dataset
from bmw.format.card import render_card
from bmw.format.stats import dataset_stats, histogram_png, metrics, token_counts
from bmw.io import atomic_dir, atomic_file, atomic_open, read_jsonl, write_bytes, write_json
from bmw.models.base import BASE_DIR, load_base_tokenizer
from bmw.params import load_params

log = logging.getLogger("stages.format")

DOCUMENTS = Path("data/filtered/documents.jsonl")
FILTER_SUMMARY = Path("data/filtered/summary.json")
CRAWL = Path("data/raw/crawl.json")
OUT = Path("data/processed")
PLOT = Path("plots/data/tokens_per_document.png")
METRICS = Path("metrics/data.json")


def _optional_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    docs = read_jsonl(DOCUMENTS)
    log.info("formatting %d documents in style %s", len(docs), params.format.style)
    data = dataset.build(docs, params.format, params.seed)
    tokenizer = load_base_tokenizer(BASE_DIR)  # token counts in the base model's own tokens
    tokens = {name: token_counts([d["text"] for d in split], tokenizer) for name, split in data.documents.items()}
    stats = dataset_stats(data, tokens)
    crawl = _optional_json(CRAWL)
    card = render_card(stats, params.format, params.seed, plot=str(Path("../..") / PLOT),
                       source=crawl and crawl.get("source"), filtering=_optional_json(FILTER_SUMMARY))
    # installed together, once all is written
    with atomic_dir(OUT) as out, atomic_file(METRICS) as metrics_file, atomic_file(PLOT) as plot:
        dataset.write(data, out)
        write_json(out / "stats.json", stats)
        with atomic_open(out / "README.md") as f:
            f.write(card)
        write_json(metrics_file, metrics(stats))
        write_bytes(plot, histogram_png(tokens))
    log.info("rows: %s; eval: %s", {k: v["rows"] for k, v in stats["splits"].items()}, metrics(stats)["eval"])


if __name__ == "__main__":
    main()
