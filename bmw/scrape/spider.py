"""The press-site spider: listing pages -> article pages -> attachments (stored by the files pipeline).

Listing pages are walked one at a time (the next page is requested from the current page's callback), so
which entries are selected - date <= until, newest first, at most `target` - depends only on the site. The walk
ends where pagination would loop: at a page already read, at a page that lists no entry not seen before, or
after LISTING_PAGE_LIMIT pages; each such stop is recorded as a listing failure.
Each selected entry not stored yet ends in one journal line: its article with its PDFs, or its failure.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import scrapy
from scrapy import signals
from scrapy.http import Request, Response, TextResponse
from twisted.python.failure import Failure
from w3lib.url import canonicalize_url

from bmw.params import ScrapeParams
from bmw.scrape.failures import exception_reason, failure_record, origin, site_path
from bmw.scrape.journal import Journal
from bmw.scrape.middlewares import PROBE, LinkAllowed
from bmw.scrape.selectors import ListingEntry, PageError, parse_article, parse_listing

log = logging.getLogger(__name__)

LISTING_PATH = "/global/article/overview"
PROGRESS_EVERY = 25  # journaled entries between progress lines
LISTING_PAGE_LIMIT = 10_000  # the live site lists some 50,000 releases, 20 a page


class PressSpider(scrapy.Spider):
    name = "press"

    def __init__(self, base_url: str, params: ScrapeParams, stored: frozenset[str], journal: Journal,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.base_url = base_url
        self.origin = origin(base_url)
        self.allowed_domains = [urlsplit(base_url).hostname]  # Scrapy's OffsiteMiddleware backs up our own check
        self.params = params
        self.stored = stored  # ids of articles already in the crawl folder: not fetched again
        self.journal = journal
        self.selection: list[dict] = []  # {"id", "path"} of the selected entries, in listing order
        self.listing_failures: list[dict] = []  # derived afresh from the listing pages on every run
        self.errors = 0
        self._seen_ids: set[str] = set()
        self._listings_read: set[str] = set()  # canonical URLs of the listing pages requested
        self.listing_page_limit = LISTING_PAGE_LIMIT

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> PressSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._count_error, signal=signals.spider_error)
        crawler.signals.connect(spider._count_error, signal=signals.item_error)
        return spider

    def _count_error(self, failure: Failure, **kwargs: Any) -> None:
        self.errors += 1  # a bug in a callback or pipeline: the run must not pass as complete

    def _onsite(self, url: str) -> bool:
        return origin(url) == self.origin

    def _path(self, url: str) -> str:
        return site_path(url) if self._onsite(url) else url

    def finish_entry(self, entry_id: str, article: dict | None, failures: list[dict]) -> None:
        """Journal an entry as final; called from the reactor (failures) or a worker thread (articles)."""
        count = self.journal.append({"id": entry_id, "article": article, "failures": failures})
        if count % PROGRESS_EVERY == 0:
            log.info("journaled %d entries this run (%d selected so far)", count, len(self.selection))

    async def start(self) -> AsyncIterator[Request]:
        yield self._listing(urljoin(self.base_url, LISTING_PATH))

    def _listing(self, url: str) -> Request:
        self._listings_read.add(canonicalize_url(url))
        return Request(url, callback=self.parse_listing, errback=self.listing_failed, dont_filter=True)

    def _listing_failure(self, url: str, reason: str) -> None:
        log.warning("listing page %s: %s; pagination ends here", url, reason)
        self.listing_failures.append(failure_record(self._path(url), "listing", reason))

    def parse_listing(self, response: Response) -> Iterator[Request]:
        if not isinstance(response, TextResponse):
            self._listing_failure(response.url, f"not html ({_content_type(response)})")
            return
        self._listings_read.add(canonicalize_url(response.url))  # where a redirect led
        try:
            page = parse_listing(response.text)
        except PageError as e:
            self._listing_failure(response.url, str(e))
            return
        target, until = self.params.target, self.params.until
        new_ids = 0
        for entry in page.entries:
            if len(self.selection) >= target:
                return
            if isinstance(entry, PageError):
                self.listing_failures.append(failure_record(site_path(response.url), "listing", str(entry)))
                continue
            url = response.urljoin(entry.href)
            path = self._path(url)
            if entry.id in self._seen_ids:
                self.listing_failures.append(failure_record(path, "article", f"duplicate of {entry.id}"))
                continue
            self._seen_ids.add(entry.id)
            new_ids += 1
            if entry.date > until:
                continue
            self.selection.append({"id": entry.id, "path": path})
            if not self._onsite(url):
                self.listing_failures.append(failure_record(path, "article", "offsite"))
            elif entry.id not in self.stored:
                # dont_filter: entries are deduplicated by id above, never silently by URL
                yield Request(url, callback=self.parse_article, errback=self.article_failed, dont_filter=True,
                              cb_kwargs={"entry": entry, "path": path})
        if page.next_href and len(self.selection) < target:
            url = response.urljoin(page.next_href)
            if not self._onsite(url):
                self.listing_failures.append(failure_record(url, "listing", "offsite"))
            elif canonicalize_url(url) in self._listings_read:
                self._listing_failure(url, "pagination loop: page already read")
            elif not new_ids:
                self._listing_failure(url, "pagination loop: the page before it lists no new entry")
            elif len(self._listings_read) >= self.listing_page_limit:
                self._listing_failure(url, f"listing page limit reached ({self.listing_page_limit} pages)")
            else:
                yield self._listing(url)

    def listing_failed(self, failure: Failure) -> None:
        reason = exception_reason(failure.value, failure.request)
        log.warning("listing page %s failed (%s): pagination ends here", failure.request.url, reason)
        self.listing_failures.append(failure_record(site_path(failure.request.url), "listing", reason))

    def article_failed(self, failure: Failure) -> None:
        kw = failure.request.cb_kwargs
        self._unusable(kw["entry"].id, kw["path"], exception_reason(failure.value, failure.request))

    def _unusable(self, entry_id: str, path: str, reason: str) -> None:
        log.warning("article %s failed: %s", path, reason)
        self.finish_entry(entry_id, None, [failure_record(path, "article", reason, entry_id)])

    def parse_article(self, response: Response, entry: ListingEntry, path: str) -> Iterator[Request | dict]:
        if not isinstance(response, TextResponse):
            self._unusable(entry.id, path, f"not html ({_content_type(response)})")
            return
        try:
            page = parse_article(response.text)
        except PageError as e:
            self._unusable(entry.id, path, str(e))
            return
        title = page.title or entry.title
        if not title:
            self._unusable(entry.id, path, "no title")
            return
        failures, attachments = [], []
        for n, href in enumerate(page.attachment_hrefs, 1):
            url = response.urljoin(href)
            if self._onsite(url):
                attachments.append({"url": url, "path": site_path(url), "file": f"pdfs/{entry.id}_{n}.pdf"})
            else:
                failures.append(failure_record(url, "attachment", "offsite", entry.id))
        links = [response.urljoin(h) for h in page.link_hrefs]
        failures += [failure_record(u, "link", "offsite", entry.id) for u in links if not self._onsite(u)]
        item = {"id": entry.id, "path": path, "title": title, "date": (page.date or entry.date).isoformat(),
                "language": page.language, "body": "\n\n".join(page.paragraphs),
                "attachment_links": attachments, "failures": failures}
        yield from self._check_links([u for u in links if self._onsite(u)], item)

    def _check_links(self, links: list[str], item: dict) -> Iterator[Request | dict]:
        """Probe related links one after another (robots.txt is judged by Scrapy's RobotsTxtMiddleware, the
        download is stopped by LinkProbeMiddleware), then hand the item on: its journal line must hold them."""
        if not links:
            yield item
            return
        yield Request(links[0], callback=self._link_fetched, errback=self._link_failed, dont_filter=True,
                      meta={PROBE: True}, cb_kwargs={"links": links[1:], "item": item})

    def _link_fetched(self, response: Response, links: list[str], item: dict) -> Iterator[Request | dict]:
        yield from self._check_links(links, item)  # only reached with LinkProbeMiddleware disabled

    def _link_failed(self, failure: Failure) -> Iterator[Request | dict]:
        kw = failure.request.cb_kwargs
        if not failure.check(LinkAllowed):
            reason = exception_reason(failure.value, failure.request)
            kw["item"]["failures"].append(failure_record(site_path(failure.request.url), "link", reason,
                                                         kw["item"]["id"]))
        yield from self._check_links(kw["links"], kw["item"])


def _content_type(response: Response) -> str:
    return (response.headers.get("Content-Type") or b"no content type").decode("latin-1").split(";")[0].strip()
