"""Failure records and the short, stable reason strings written to `failures.jsonl`."""

from __future__ import annotations

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

# Checked in order (subclasses first); values are the reasons the contract names.
_EXCEPTION_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (DownloadTimeoutError, "timeout"),
    (CannotResolveHostError, "dns"),
    (DownloadConnectionRefusedError, "connection refused"),
    (ResponseDataLossError, "data loss"),
    (DownloadFailedError, "download failed"),
)


def site_path(url: str) -> str:
    """The site-relative form of a URL (path and query), so outputs never hold a host or port."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def failure_record(path: str, kind: Kind, reason: str, article: str | None = None) -> dict:
    """`article` is the id of the listing entry the failure belongs to; None for listing-level failures,
    which every run derives afresh from the listing pages."""
    return {"path": path, "kind": kind, "reason": reason, "article": article}


def http_reason(response: Response) -> str:
    retries = response.meta.get("retry_times", 0) if response.request is not None else 0
    return f"http {response.status}" + (f" after {retries} retries" if retries else "")


def exception_reason(exc: BaseException, request: Request) -> str:
    if isinstance(exc, HttpError):
        return http_reason(exc.response)
    if isinstance(exc, IgnoreRequest):
        message = str(exc)
        if message == "Forbidden by robots.txt":  # Scrapy's RobotsTxtMiddleware
            return "robots.txt"
        if message.startswith("Filtered offsite request"):  # Scrapy's OffsiteMiddleware
            return "offsite"
        return f"ignored ({message})"
    if isinstance(exc, DownloadCancelledError) and "download_maxsize" in request.meta:
        return "too large"  # the download handler cancels a body above the request's download_maxsize
    for cls, reason in _EXCEPTION_REASONS:
        if isinstance(exc, cls):
            return reason
    return type(exc).__name__
