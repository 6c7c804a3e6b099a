"""Run one crawl and merge it into the crawl folder: `crawl(out_dir, params, url)`.

`url` is the base URL of the site: the live one (`scrape.source`, e.g. `https://www.press.bmwgroup.com`) or
the bundled mirror that the scrape stage serves on 127.0.0.1 for `scrape.source: bundled`.

Live site (untested here: this machine has no internet). Discovery is designed from the live PressClub's
URL shapes, which the mirror copies: listing `/global/article/overview` (`?page=N`, newest first),
releases `/global/article/detail/T0######EN/<slug>` (German ones end in `DE`), attachments
`/global/article/attachment/T0######EN/<n>` without a `.pdf` suffix, robots.txt obeyed. The markup the
spider reads is named in one place, `bmw/scrape/selectors.py`; before a full live crawl, run once with a
small `target` and check that `articles.jsonl` has titles, dates and bodies - if the live listing is
rendered by JavaScript, those selectors have to be pointed at the data the page loads instead.

Incremental and crash-safe: the crawl process journals each entry once it is done; a run (after a kill -9
or a finished run) fetches the listing pages again but no stored article (a failed one is tried again). The merge below is
the only writer of `articles.jsonl`, `failures.jsonl` and `crawl.json`: it builds the new snapshot in a folder
beside the crawl folder (those three files and hard links to the PDFs they reference) and swaps it in whole,
so the snapshot files always describe one run and the journal, unreferenced PDFs and temp files of a killed
write go with the old folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bmw.io import atomic_dir, write_json, write_jsonl
from bmw.params import ScrapeParams
from bmw.scrape.state import (
    ARTICLE_ORDER,
    ARTICLES,
    FAILURE_ORDER,
    FAILURES,
    PDF_DIR,
    SUMMARY,
    load_entries,
    merge,
    referenced_files,
)

log = logging.getLogger(__name__)


class CrawlError(RuntimeError):
    """The crawl process did not finish; the journal keeps its progress for the next run."""


def crawl(out_dir: Path, params: ScrapeParams, url: str) -> dict:
    """Crawl the site at `url` into `out_dir`, merging with what is there; returns the summary."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("crawling %s into %s (until %s, target %d)", url, out_dir, params.until, params.target)
    run = _run_process(out_dir, url, params)
    if not run["selection"] and run["listing_failures"]:
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in run["listing_failures"])
        raise CrawlError(f"no listing entry could be read from {url} ({reasons}); nothing was written")
    articles, failures = merge(load_entries(out_dir), run["selection"], run["listing_failures"], params)
    keep = referenced_files(articles)
    summary = {"source": params.source, "until": params.until.isoformat(), "target": params.target,
               "articles": len(articles), "failures": len(failures), "pdfs": len(keep)}
    removed = sum(f"{PDF_DIR}/{f.name}" not in keep for f in (out_dir / PDF_DIR).glob("*"))
    with atomic_dir(out_dir) as snapshot:
        (snapshot / PDF_DIR).mkdir()
        for file in sorted(keep):
            _link(out_dir / file, snapshot / file)
        write_jsonl(snapshot / ARTICLES, articles, sort_key=ARTICLE_ORDER)
        write_jsonl(snapshot / FAILURES, failures, sort_key=FAILURE_ORDER)
        write_json(snapshot / SUMMARY, summary)
    log.info("snapshot: %d articles, %d pdfs, %d failures; this run journaled %d entries in %d pages "
             "(%.1f s), removed %d unreferenced files", len(articles), len(keep), len(failures), run["journaled"],
             run["pages"], run["seconds"], removed)
    return {**summary, "journaled": run["journaled"], "pages": run["pages"], "seconds": run["seconds"]}


def _run_process(out_dir: Path, url: str, params: ScrapeParams) -> dict:
    with tempfile.TemporaryDirectory(prefix="bmw-crawl-") as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bmw.scrape.process", "--out", str(out_dir), "--url", url,
               "--params", params.model_dump_json(), "--result", str(result), "--exit-with-parent"]
        # stdin stays open while we wait: the child exits if this process dies (see process.py)
        with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:
            code = proc.wait()
        if code != 0 or not result.exists():
            raise CrawlError(f"crawl process exited with status {code} (log above); run again to resume")
        return json.loads(result.read_text(encoding="utf-8"))


def _link(source: Path, target: Path) -> None:
    """A second name for a stored PDF (no copy: real crawls hold gigabytes), a copy where links are refused."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
