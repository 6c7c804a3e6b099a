"""Failure records and the short, stable reason strings written to `failures.jsonl`."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Request, Response
from scrapy.spidermiddlewares.httperror import HttpError

Kind = Literal["listing", "article", "attachment", "link"]
RETRY_AFTER = "retry_after_s"  # request meta key: the wait a response asked for, when it was too long to honour


class OffsiteRequest(IgnoreRequest):
    """A request (a redirect or meta refresh above all) that leaves the crawl's site; the message is the reason."""


# Checked in order (subclasses first); values are the reasons the contract names.
_EXCEPTION_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (DownloadTimeoutError, "timeout"),
    (CannotResolveHostError, "dns"),
    (DownloadConnectionRefusedError, "connection refused"),
    (ResponseDataLossError, "data loss"),
    (DownloadFailedError, "download failed"),
)


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str | None, int | None]:
    """(host, port) of a URL, the port None where it is its scheme's default: http and https of one host are one
    site (a site may move from one to the other), another port is another site."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is no number: no site of ours
        return None, None
    return parts.hostname, None if port in (None, DEFAULT_PORTS.get(parts.scheme)) else port


def site_path(url: str) -> str:
    """The site-relative form of a URL (path and query), so outputs never hold a host or port."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# Reasons that may not recur on the next run (the journaled entry is then fetched again); the others - 404, not a
# pdf, too large, offsite, robots.txt - are the site's answer and stay until the site changes.
TRANSIENT = re.compile(r"http (?:5\d\d|408|429)\b.*|timeout|dns|connection refused|data loss|download failed")


def is_transient(reason: str) -> bool:
    return bool(TRANSIENT.fullmatch(reason))


def failure_record(path: str, kind: Kind, reason: str, article: str | None = None) -> dict:
    """`article` is the id of the listing entry the failure belongs to; None for listing-level failures,
    which every run derives afresh from the listing pages."""
    return {"path": path, "kind": kind, "reason": reason, "article": article}


def http_reason(response: Response) -> str:
    meta = response.meta if response.request is not None else {}
    retries, wait = meta.get("retry_times", 0), meta.get(RETRY_AFTER)
    return (f"http {response.status}" + (f" after {retries} retries" if retries else "")
            + (f" (retry-after {wait:.0f} s: too long to wait)" if wait is not None else ""))


def exception_reason(exc: BaseException, request: Request) -> str:
    if isinstance(exc, HttpError):
        return http_reason(exc.response)
    if isinstance(exc, IgnoreRequest):
        message = str(exc)
        if isinstance(exc, OffsiteRequest):
            return message
        if message == "Forbidden by robots.txt":  # Scrapy's RobotsTxtMiddleware
            return "robots.txt"
        if message.startswith("Filtered offsite request"):  # Scrapy's OffsiteMiddleware
            return "offsite"
        if message == "max redirections reached":  # RedirectMiddleware: a loop, or a chain past REDIRECT_MAX_TIMES
            return "too many redirects"
        if "DOWNLOAD_MAXSIZE" in message:  # HttpCompressionMiddleware: a body that inflates past the limit
            return "too large"
        return f"ignored ({message})"
    if isinstance(exc, DownloadCancelledError):
        # the download handler cancels a body above its maxsize, declared (Content-Length) or received so far
        return "too large"
    for cls, reason in _EXCEPTION_REASONS:
        if isinstance(exc, cls):
            return reason
    return type(exc).__name__
