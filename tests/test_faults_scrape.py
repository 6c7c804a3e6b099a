"""Fault suite, scrape: a real crawl of the mirror on 127.0.0.1 through 5xx bursts, 429 storms with Retry-After,
timeouts, cut-off bodies, wrong content types, redirect loops, off-site redirects (another port, meta refresh),
oversize and inflating bodies, hostile markup and ids; and kill -9 at random moments. Counts go to tests/faults.py.
"""

from __future__ import annotations

import email.utils
import gzip
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scrapy.http import HtmlResponse, Request

from bmw.io import read_jsonl
from bmw.params import ScrapeParams
from bmw.scrape import crawl
from bmw.scrape.journal import JOURNAL_NAME, Journal, read_journal
from bmw.scrape.spider import PressSpider
from mirror.content import POSITIONS
from mirror.server import Fault, serve_site
from tests.faults import SECRETS, files_with_secrets
from tests.test_scrape import ARTICLES, LISTING, RUNNER, _ppid, _wait_gone, failures, served, tree

AREA = "scrape"
TARGET = 40
PARAMS = ScrapeParams(target=TARGET, concurrency=4, autothrottle=False, timeout_s=2, retries=2, max_pdf_mb=0.5)
GOOD = [a for i, a in enumerate(ARTICLES[:TARGET]) if a.attachment == "pdf" and i not in POSITIONS.values()]
OVERSIZE = b"%PDF-1.4\n" + b"0" * (600 * 1024)  # above max_pdf_mb 0.5
DEEP = ('<html lang="en"><body><h1 class="article-title">Deep</h1><div class="article-text">'
        + "<div>" * 5000 + "<p>text</p>" + "</div>" * 5000 + "</div></body></html>").encode()


def _meta_refresh(url: str) -> bytes:
    return f'<html><head><meta http-equiv="refresh" content="0;url={url}"></head><body></body></html>'.encode()


def _http_date(seconds_ahead: float) -> str:
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    with serve_site() as site:
        crawl(out, PARAMS, site.url)
    return out


@pytest.mark.slow
def test_a_crawl_through_every_kind_of_fault_loses_nothing(reference, tmp_path, ledger):
    """One crawl with a fault on almost every release; a second run against the healthy site recovers every fault
    that may pass. Permanent ones (the site's answer) stay recorded as failure rows."""
    a = {i: art for i, art in enumerate(GOOD)}
    with serve_site() as elsewhere:  # the same mirror on another port: another site
        away = elsewhere.url + a[0].path
        page = {  # article page faults: fault, expected failure reason after the first run (None: recovered)
            0: ([503, 503], None, "5xx burst within the retries"),
            1: ([500] * 3, "http 500 after 2 retries", "5xx burst past the retries"),
            2: ([Fault(429, headers={"Retry-After": "1"})] * 2, None, "429 storm with Retry-After 1 s"),
            3: ([Fault(429, headers={"Retry-After": "3600"})], "http 429 (retry-after 3600 s: too long to wait)",
                "429 with Retry-After 1 h"),
            4: (["timeout"], None, "timeout"),
            5: ([Fault(body=b"\x89PNG\r\n\x1a\n" + b"\0" * 64, content_type="image/png")], "not html (image/png)",
                "article served as an image"),
            6: ([Fault(cut=100)] * 3, "data loss", "article body cut off, every try"),
            7: ([Fault(302, headers={"Location": a[7].path})] * 6, "too many redirects", "redirect loop"),
            8: ([Fault(302, headers={"Location": away})], "offsite redirect", "redirect to another port"),
            9: ([Fault(body=_meta_refresh(away), content_type="text/html")], "offsite redirect",
                "meta refresh to another port"),
            10: ([Fault(body=DEEP, content_type="text/html")], "markup nested too deeply to parse whole",
                 "markup nested 5000 deep"),
            11: ([Fault(body=gzip.compress(b" " * (64 << 20)), content_type="text/html",
                        headers={"Content-Encoding": "gzip"})], "too large", "gzip body inflating to 64 MiB"),
        }
        attachment = {
            12: ([Fault(cut=200)] * 3, "data loss", "pdf cut off, every try"),
            13: ([Fault(body=OVERSIZE)], "too large", "oversize pdf with Content-Length"),
            14: ([Fault(body=OVERSIZE, length=False)], "too large", "oversize pdf without Content-Length"),
            15: ([Fault(body=b"<html>login</html>", content_type="application/pdf")], "not a pdf",
                 "html served as application/pdf"),
            16: ([Fault(content_type="text/html")], None, "pdf served as text/html"),
            17: ([Fault(302, headers={"Location": elsewhere.url + a[17].attachment_path})], "offsite redirect",
                  "pdf redirected to another port"),
            18: ([502], None, "5xx on a pdf"),
            19: ([Fault(503, headers={"Retry-After": _http_date(5)})], None, "503 with an HTTP-date Retry-After"),
        }
        faults = {a[i].path: f for i, (f, _, _) in page.items()}
        faults |= {a[i].attachment_path: f for i, (f, _, _) in attachment.items()}
        faults[LISTING] = [503]
        with serve_site(faults=faults) as site:
            started = time.monotonic()
            crawl(tmp_path, PARAMS, site.url)
            first = failures(tmp_path)
            stored = {r["id"]: r for r in read_jsonl(tmp_path / "articles.jsonl")}
            times = [t for t, p in site.requests if p == a[2].path]
        assert not elsewhere.hits, elsewhere.hits  # nothing was fetched from the other site
    reference_ids = {r["id"] for r in read_jsonl(reference / "articles.jsonl")}
    ledger.check(AREA, "503 on listing page 1", site.hits[LISTING] == 2 and stored.keys() | {
        a[i].id for i, (_, reason, _) in page.items() if reason} == reference_ids)
    for i, (_, reason, name) in page.items():
        row = (a[i].path, "article", reason, a[i].id)
        ok = row in first and a[i].id not in stored if reason else a[i].id in stored
        if i == 2:
            ok = ok and len(times) == 3 and min(t2 - t1 for t1, t2 in zip(times, times[1:])) >= 0.95
        ledger.check(AREA, name, ok, detail=(reason, sorted(r for r in first if r[3] == a[i].id)))
    for i, (_, reason, name) in attachment.items():
        file = tmp_path / f"pdfs/{a[i].id}_1.pdf"
        if reason:
            ok = (a[i].attachment_path, "attachment", reason, a[i].id) in first and not file.exists()
        else:
            ok = file.read_bytes() == served(a[i].attachment_path)
        ledger.check(AREA, name, ok and a[i].id in stored, detail=sorted(r for r in first if r[3] == a[i].id))
    assert time.monotonic() - started < 60

    with serve_site() as site:  # the site is healthy again: what may pass is fetched again, and recovers
        crawl(tmp_path, PARAMS, site.url)
    permanent = {(a[i].attachment_path, "attachment", reason, a[i].id)
                 for i, (_, reason, _) in attachment.items() if reason and reason != "data loss"}
    expected, got = tree(reference), tree(tmp_path)
    missing = [k for k in expected if k.startswith("pdfs/") and got.get(k) != expected[k]
               and (f"/global/article/attachment/{k[5:-6]}/1", "attachment") not in {r[:2] for r in permanent}]
    ids = {r["id"] for r in read_jsonl(tmp_path / "articles.jsonl")}
    ledger.check(AREA, "recovery run after the faults", failures(tmp_path) == failures(reference) | permanent,
                 lost=len(missing) + len(reference_ids - ids), detail=(missing, failures(tmp_path) ^ failures(reference)))


def _listing_body(page: int, next_page: int | None = None, extra: str = "") -> bytes:
    """A listing page of the mirror with its next link pointing elsewhere and extra entries at the top."""
    path = LISTING if page == 1 else f"{LISTING}?page={page}"
    html = served(path).decode()
    current = f"{LISTING}?page={page + 1}"
    if next_page is not None:
        html = html.replace(f'href="{current}"', f'href="{LISTING if next_page == 1 else f"{LISTING}?page={next_page}"}"')
    return html.replace('<article class="newsfeed"', extra + '<article class="newsfeed"', 1).encode()


HOSTILE_IDS = ["../../../../tmp/bmw-evil", "/tmp/bmw-abs", ".hidden", "T0 1", "a" * 65]


def _entry(entry_id: str, href: str) -> str:
    return (f'<article class="newsfeed" data-id="{entry_id}"><a class="newsfeed-link" href="{href}">'
            '<h3 class="newsfeed-title">x</h3></a><time datetime="2026-10-01">1.10.2026</time></article>')


@pytest.mark.slow
def test_hostile_listings_loops_and_ids_are_failure_rows(tmp_path, ledger):
    hostile = "".join(_entry(i, ARTICLES[0].path) for i in HOSTILE_IDS)
    offsite = _entry("T0999999EN", "http://127.0.0.1:9/global/article/detail/T0999999EN/x")
    faults = {LISTING: [Fault(body=_listing_body(1, extra=hostile + offsite), content_type="text/html")],
              f"{LISTING}?page=2": [Fault(body=_listing_body(2, next_page=1), content_type="text/html")]}
    out = tmp_path / "raw"
    with serve_site(faults=faults) as site:
        crawl(out, PARAMS.model_copy(update={"target": 60}), site.url)  # more than pages 1 and 2 list
        assert not site.hits[f"{LISTING}?page=3"]
    rows = failures(out)
    for entry_id in HOSTILE_IDS:
        row = (LISTING, "listing", f"listing entry with an unusable data-id {entry_id[:70]!r}", None)
        ledger.check(AREA, f"hostile data-id {entry_id[:20]!r}", row in rows, detail=sorted(rows))
    ledger.check(AREA, "listing entry on another port", (
        "http://127.0.0.1:9/global/article/detail/T0999999EN/x", "article", "offsite", None) in rows)
    outside = [p for p in (Path("/tmp/bmw-evil"), Path("/tmp/bmw-abs"), tmp_path / "bmw-evil") if p.exists()]
    names = {p.name for p in (out / "pdfs").iterdir()}
    ledger.check(AREA, "no file outside the crawl folder", not outside and all(
        n.startswith("T0") and n.endswith("_1.pdf") for n in names), detail=(outside, names))
    ids = [r["id"] for r in read_jsonl(out / "articles.jsonl")]
    ledger.check(AREA, "pagination loop back to page 1", (
        f"{LISTING}", "listing", "pagination loop: page already read", None) in rows
        and sorted(ids) == sorted(a.id for a in ARTICLES[:39]), detail=sorted(rows))


def _spider(tmp_path: Path) -> PressSpider:
    spider = PressSpider(base_url="http://127.0.0.1:8000", params=PARAMS.model_copy(update={"target": 10**6}),
                         stored=frozenset(), journal=Journal(tmp_path / JOURNAL_NAME))
    return spider


def _page(url: str, body: str) -> HtmlResponse:
    return HtmlResponse(url, body=body.encode(), encoding="utf-8", request=Request(url))


def test_pagination_stops_at_a_page_without_new_entries_and_at_the_page_limit(tmp_path, ledger):
    """Listing pages that lead on forever: repeating entries under fresh URLs, or fresh entries without end."""
    spider = _spider(tmp_path)
    base = "http://127.0.0.1:8000" + LISTING
    same = _entry("T0000001EN", "/global/article/detail/T0000001EN/x")
    nxt = '<a class="pagination-next" rel="next" href="{}">Next</a>'
    first = list(spider.parse_listing(_page(base, same + nxt.format(f"{LISTING}?page=2"))))
    again = list(spider.parse_listing(_page(f"{base}?page=2", same + nxt.format(f"{LISTING}?page=3"))))
    ledger.check(AREA, "pagination repeating its entries under new URLs", len(
        [r for r in first if r.callback == spider.parse_listing]) == 1 and not [
        r for r in again if r.callback == spider.parse_listing] and spider.listing_failures[-1]["reason"] ==
        "pagination loop: the page before it lists no new entry", detail=spider.listing_failures)

    spider = _spider(tmp_path)
    spider.listing_page_limit = 5
    url, pages = base, 0
    while url and pages < 50:
        pages += 1
        body = _entry(f"T{pages:07d}EN", f"/global/article/detail/T{pages:07d}EN/x") + nxt.format(
            f"{LISTING}?page={pages + 1}")
        follow = [r for r in spider.parse_listing(_page(url, body)) if r.callback == spider.parse_listing]
        url = follow[0].url if follow else None
    ledger.check(AREA, "endless pagination with fresh entries", pages == 5 and spider.listing_failures[-1][
        "reason"] == "listing page limit reached (5 pages)", detail=(pages, spider.listing_failures))


# --- kill -9 at random moments ------------------------------------------------------------------------------


def _visible_outputs_are_whole(out: Path, reference: Path) -> bool:
    """The snapshot files exist all three or none, each equal to the reference; every PDF present is whole."""
    names = ("articles.jsonl", "failures.jsonl", "crawl.json")
    present = [n for n in names if (out / n).exists()]
    if present and (present != list(names) or any((out / n).read_bytes() != (reference / n).read_bytes()
                                                  for n in names)):
        return False
    pdfs = out / "pdfs"
    return all(f.read_bytes() == (reference / "pdfs" / f.name).read_bytes()
               for f in (pdfs.iterdir() if pdfs.exists() else []) if not f.name.startswith("."))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_moment_then_rerun_equals_an_uninterrupted_crawl(reference, tmp_path, seed, ledger):
    moment = random.Random(seed).uniform(0.5, 4.0)
    out, log = tmp_path / "raw", tmp_path / "crawl.log"
    with serve_site(delay_s=0.05) as site:
        with log.open("wb") as f:
            runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(out), PARAMS.model_dump_json(), site.url],
                                      stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **SECRETS})
        time.sleep(moment)
        crawler = _children(runner.pid)
        finished = runner.poll() is not None
        runner.kill()  # SIGKILL (a no-op once it has finished)
        runner.wait()
        for pid in crawler:  # the crawl process stops once its runner is gone
            _wait_gone(pid, 20)
        whole = _visible_outputs_are_whole(out, reference)
        journaled = len(read_journal(out / JOURNAL_NAME))
        crawl(out, PARAMS, site.url)
    leaks = files_with_secrets(tmp_path)
    ledger.check(AREA, f"kill -9 after {moment:.2f} s (seed {seed})",
                 whole and not (out / JOURNAL_NAME).exists() and not leaks, lost=int(tree(out) != tree(reference)),
                 detail=(finished, journaled, leaks, log.read_text()[-2000:]))


def _children(pid: int) -> list[int]:
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _ppid(stat) == pid]
