"""Downloader middlewares: the crawl stays on its site, honours Retry-After, and judges links without fetching them."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.asyncio import sleep

from bmw.scrape.failures import RETRY_AFTER, OffsiteRequest, origin

PROBE = "link_probe"  # request meta key


class LinkAllowed(IgnoreRequest):
    """A probed link passed every check before the download (robots.txt above all); it is not fetched."""


class LinkProbeMiddleware:
    """Sits right after RobotsTxtMiddleware (100): a request marked `link_probe` that got this far is allowed
    by robots.txt, and is stopped here so that related links are checked, never crawled."""

    def process_request(self, request: Request) -> None:
        if request.meta.get(PROBE):
            raise LinkAllowed("link allowed")


class SameOriginMiddleware:
    """Every request must stay on the crawl's host and port. Scrapy's OffsiteMiddleware compares host names only
    and lets `dont_filter` requests pass - every request of this spider, and the redirects Scrapy builds from them
    (HTTP 3xx and meta refresh alike) - so a redirect could lead the crawl anywhere."""

    def __init__(self, crawler: Any):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Any) -> SameOriginMiddleware:
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        if origin(request.url) != origin(self.crawler.spider.base_url):
            raise OffsiteRequest("offsite redirect" if request.meta.get("redirect_urls") else "offsite")


def retry_after(response: Response, now: float | None = None) -> float | None:
    """Seconds a response's Retry-After header asks to wait (delta seconds or an HTTP date), None without one."""
    value = (response.headers.get("Retry-After") or b"").decode("latin-1").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryAfterMiddleware(RetryMiddleware):
    """Scrapy's RetryMiddleware, which retries a 429 or 503 at once, waiting the time its Retry-After asks first.
    A wait above RETRY_AFTER_MAX_S is not honoured by stalling the crawl: the request gives up, and its entry is
    fetched again by the next run."""

    def __init__(self, settings: Any):
        super().__init__(settings)
        self.max_wait = settings.getfloat("RETRY_AFTER_MAX_S")

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        wait = retry_after(response) if response.status in (429, 503) else None
        if wait is None or request.meta.get("dont_retry", False):
            return super().process_response(request, response)
        if wait > self.max_wait:
            request.meta[RETRY_AFTER] = wait
            return response
        retry = self._retry(request, f"{response.status} with Retry-After {wait:g} s")
        if retry is None:
            return response
        await sleep(wait)
        return retry
