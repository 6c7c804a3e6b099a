"""DVC stage `scrape`: the press site (or a mirror of it) -> data/raw/articles.jsonl, failures.jsonl,
crawl.json and pdfs/. Incremental: articles already in data/raw (a `persist: true` output) are not fetched again.

python -m stages.scrape
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

from bmw.params import load_params
from bmw.scrape import crawl
from mirror.server import serve_site

RAW = Path("data/raw")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    served = params.scrape.source == "bundled" or params.scrape.mirror_dir is not None
    # a mirror (the bundled one: mirror_dir None) on 127.0.0.1, for this crawl only
    with serve_site(params.scrape.mirror_dir) if served else nullcontext() as site:
        summary = crawl(RAW, params.scrape, site.url if served else params.scrape.source)
    logging.getLogger("stages.scrape").info(
        "%s: %d articles, %d pdfs, %d failures (this run: %d new entries, %d pages in %.1f s)", RAW,
        summary["articles"], summary["pdfs"], summary["failures"], summary["journaled"], summary["pages"],
        summary["seconds"])


if __name__ == "__main__":
    main()
