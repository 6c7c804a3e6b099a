"""Throughput of the clean stage on the mirror's PDFs: pages per second with 1 worker and with `workers`.

bmw bench clean [--site DIR] [--repeat N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from bmw.clean.documents import build_documents
from bmw.params import CleanParams, load_params
from mirror import SITE_DIR


def pdf_articles(site: Path) -> list[dict]:
    """One minimal article record per PDF the site serves, its attachment read from the site folder."""
    routes = json.loads((site / "routes.json").read_text(encoding="utf-8"))
    return [{"id": path, "path": path, "title": "", "date": "", "body": "", "attachments": [{"file": r["file"]}]}
            for path, r in sorted(routes.items()) if r["type"] == "application/pdf"]


def pages_per_second(articles: list[dict], site: Path, params: CleanParams) -> tuple[int, float]:
    start = time.perf_counter()
    documents, _ = build_documents(articles, site, params, progress=False)
    seconds = time.perf_counter() - start
    return sum(d["stats"]["pages"] for d in documents), seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bmw bench clean", description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=SITE_DIR)
    ap.add_argument("--repeat", type=int, default=3, help="pass over the PDFs this many times per run")
    ap.add_argument("--workers", type=int, help="default: clean.workers of params.yaml")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    params = load_params().clean if Path("params.yaml").exists() else CleanParams()
    workers = args.workers or params.workers
    articles = pdf_articles(args.site) * args.repeat
    for n in sorted({1, workers}):
        pages, seconds = pages_per_second(articles, args.site, params.model_copy(update={"workers": n}))
        print(f"workers={n}: {pages} pages in {seconds:.2f} s = {pages / seconds:.1f} pages/s "
              f"({len(articles) / seconds:.1f} PDFs/s)")


if __name__ == "__main__":
    main()
