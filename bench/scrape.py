"""Crawl throughput on loopback: `bmw bench scrape [--params params.yaml] [--target N]`.

Serves the bundled mirror, crawls it into a temp folder with the scrape params, and prints pages per
second, pages being the listing, article and attachment responses the mirror served (robots.txt aside),
over the crawl process's own crawl time and over the wall time including process start-up.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from bmw.params import ScrapeParams, load_params
from bmw.scrape.runner import crawl
from mirror.server import serve_site

PAGE_PREFIXES = ("/global/article/overview", "/global/article/detail/", "/global/article/attachment/")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bmw bench scrape", description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="scrape params (default: defaults)")
    ap.add_argument("--target", type=int, default=None, help="override scrape.target")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params).scrape if args.params.exists() else ScrapeParams()
    params = params.model_copy(update={"source": "bundled", **({"target": args.target} if args.target else {})})
    with tempfile.TemporaryDirectory(prefix="bmw-bench-") as tmp, serve_site() as site:
        start = time.perf_counter()
        summary = crawl(Path(tmp), params, site.url)
        wall = time.perf_counter() - start
        pages = sum(n for path, n in site.hits.items() if path.startswith(PAGE_PREFIXES))
    print(f"concurrency {params.concurrency}, autothrottle {params.autothrottle}: {summary['articles']} articles, "
          f"{summary['pdfs']} pdfs, {pages} pages; {pages / summary['seconds']:.1f} pages/s crawling "
          f"({summary['seconds']:.2f} s), {pages / wall:.1f} pages/s wall incl. process start ({wall:.2f} s)")


if __name__ == "__main__":
    main()
