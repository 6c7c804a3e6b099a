"""DVC stage `clean`: data/raw/ -> data/clean/documents.jsonl, data/clean/rejects.jsonl, metrics/clean.json.

python -m stages.clean
"""

from __future__ import annotations

import logging
from pathlib import Path

from bmw.clean.documents import build_documents, summarize
from bmw.io import atomic_dir, atomic_file, read_jsonl, write_json, write_jsonl
from bmw.params import load_params

RAW = Path("data/raw")
OUT = Path("data/clean")
METRICS = Path("metrics/clean.json")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # broken PDFs are expected; their reasons go to rejects
    params = load_params()
    source = RAW / "articles.jsonl"
    if not source.exists():
        raise SystemExit(f"{source} is missing: run the scrape stage first")
    articles = read_jsonl(source)
    documents, rejects = build_documents(articles, RAW, params.clean)
    metrics = summarize(articles, documents, rejects)
    with atomic_dir(OUT) as out, atomic_file(METRICS) as metrics_file:  # installed together, once all is written
        write_jsonl(out / "documents.jsonl", documents, sort_key="id")
        write_jsonl(out / "rejects.jsonl", rejects, sort_key=("id", "file"))
        write_json(metrics_file, metrics)
    logging.getLogger("stages.clean").info(
        "%d documents (%s), removed %.1f%% of the characters; rejects: %s", metrics["documents"],
        metrics["sources"], 100 * metrics["removed_share"], metrics["reject_reasons"])


if __name__ == "__main__":
    main()
