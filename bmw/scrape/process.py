"""One crawl in its own process: `python -m bmw.scrape.process --out DIR --url URL --params JSON --result FILE`.

A Twisted reactor cannot be restarted within a process, so the runner starts this module for every crawl.
Progress goes to the journal in DIR as it happens; FILE receives what the runner needs to merge (the
selection and the listing-level failures) only when the crawl finished cleanly, else the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from scrapy.crawler import CrawlerProcess

from bmw.io import write_json
from bmw.params import ScrapeParams
from bmw.scrape.journal import JOURNAL_NAME, Journal
from bmw.scrape.settings import crawl_settings
from bmw.scrape.spider import PressSpider
from bmw.scrape.state import stored_article_ids

log = logging.getLogger("bmw.scrape.process")


def _exit_when_stdin_closes() -> None:
    """The runner holds our stdin open; EOF means it died (e.g. SIGKILL): stop at once rather than crawl on
    against a mirror that died with it and journal its connection errors as failures."""

    def watch() -> None:
        while os.read(sys.stdin.fileno(), 4096):  # raw fd: a buffered reader would block interpreter exit
            pass
        log.error("runner gone: stopping the crawl")
        os._exit(3)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run(out_dir: Path, url: str, params: ScrapeParams, result: Path) -> int:
    journal = Journal(out_dir / JOURNAL_NAME)
    process = CrawlerProcess(crawl_settings(params, out_dir))
    crawler = process.create_crawler(PressSpider)
    process.crawl(crawler, base_url=url, params=params, stored=stored_article_ids(out_dir), journal=journal)
    process.start()
    journal.close()
    spider, reason = crawler.spider, crawler.stats.get_value("finish_reason")
    if reason != "finished" or spider.errors:
        log.error("crawl incomplete (finish reason %s, %d errors in callbacks/pipelines); the journal keeps "
                  "what was done, run again to resume", reason, spider.errors)
        return 1
    stats = crawler.stats.get_stats()
    write_json(result, {
        "selection": spider.selection,
        "listing_failures": spider.listing_failures,
        "journaled": journal.appended,
        "pages": stats.get("response_received_count", 0) - stats.get("robotstxt/response_count", 0),
        "seconds": (stats["finish_time"] - stats["start_time"]).total_seconds(),
    })
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bmw.scrape.process", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="crawl folder (articles.jsonl, pdfs/, journal)")
    ap.add_argument("--url", required=True, help="base URL of the site to crawl")
    ap.add_argument("--params", required=True, help="ScrapeParams as JSON")
    ap.add_argument("--result", type=Path, required=True, help="where to write the run's merge input")
    ap.add_argument("--exit-with-parent", action="store_true", help="exit when stdin reaches EOF")
    args = ap.parse_args(argv)
    if args.exit_with_parent:
        _exit_when_stdin_closes()
    return run(args.out, args.url, ScrapeParams.model_validate_json(args.params), args.result)


if __name__ == "__main__":
    sys.exit(main())
