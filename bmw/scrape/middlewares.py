"""A downloader middleware that lets Scrapy's own checks judge a link without downloading it."""

from __future__ import annotations

from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request

PROBE = "link_probe"  # request meta key


class LinkAllowed(IgnoreRequest):
    """A probed link passed every check before the download (robots.txt above all); it is not fetched."""


class LinkProbeMiddleware:
    """Sits right after RobotsTxtMiddleware (100): a request marked `link_probe` that got this far is allowed
    by robots.txt, and is stopped here so that related links are checked, never crawled."""

    def process_request(self, request: Request) -> None:
        if request.meta.get(PROBE):
            raise LinkAllowed("link allowed")
