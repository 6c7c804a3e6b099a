"""Scrapy settings of the press crawl, every one set explicitly from `ScrapeParams`.

Outside a Scrapy project template the library's fallbacks apply (robots.txt ignored, 8 requests per domain,
no delay, telnet console and remote control on), so nothing here is left to a default that matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bmw.params import ScrapeParams

RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
RETRY_AFTER_MAX_S = 60.0  # a longer Retry-After gives the request up (the next run tries it again)
REDIRECT_MAX_TIMES = 5  # a loop fails after this many hops instead of Scrapy's 20
PAGE_MAX_BYTES = 16 * 1024 * 1024  # HTML pages (and any body they inflate to); attachments have max_pdf_mb
LOGSTATS_INTERVAL_S = 15.0


def crawl_settings(params: ScrapeParams, out_dir: Path) -> dict[str, Any]:
    return {
        "BOT_NAME": "bmw-press-llm",
        "USER_AGENT": params.user_agent,
        "ROBOTSTXT_OBEY": params.obey_robots,
        "CONCURRENT_REQUESTS": params.concurrency,  # one site: the global cap is the per-domain one
        "CONCURRENT_REQUESTS_PER_DOMAIN": params.concurrency,
        "DOWNLOAD_DELAY": params.delay_s,
        "DOWNLOAD_DELAY_JITTER": 0.5,  # delays vary +-50% around DOWNLOAD_DELAY
        "AUTOTHROTTLE_ENABLED": params.autothrottle,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(params.concurrency),
        "AUTOTHROTTLE_START_DELAY": max(params.delay_s, 1.0),
        "AUTOTHROTTLE_MAX_DELAY": max(params.delay_s, 60.0),
        "DOWNLOAD_TIMEOUT": params.timeout_s,
        "RETRY_ENABLED": True,
        "RETRY_TIMES": params.retries,
        "RETRY_HTTP_CODES": RETRY_HTTP_CODES,
        "RETRY_GIVE_UP_LOG_LEVEL": "WARNING",  # a given-up request is an expected, recorded failure
        "RETRY_AFTER_MAX_S": RETRY_AFTER_MAX_S,  # read by RetryAfterMiddleware
        "REDIRECT_MAX_TIMES": REDIRECT_MAX_TIMES,
        "DOWNLOAD_MAXSIZE": PAGE_MAX_BYTES,
        "COOKIES_ENABLED": False,
        "DOWNLOADER_MIDDLEWARES": {
            "bmw.scrape.middlewares.SameOriginMiddleware": 60,  # before robots.txt: no other site is asked
            "bmw.scrape.middlewares.LinkProbeMiddleware": 110,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "bmw.scrape.middlewares.RetryAfterMiddleware": 550,
        },
        "ITEM_PIPELINES": {
            "bmw.scrape.pipelines.PdfFilesPipeline": 100,
            "bmw.scrape.pipelines.JournalPipeline": 900,
        },
        "FILES_STORE": str(out_dir),
        "PDF_MAX_BYTES": int(params.max_pdf_mb * 1024 * 1024),  # read by PdfFilesPipeline
        "MEDIA_ALLOW_REDIRECTS": True,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "MEMUSAGE_ENABLED": False,
        "EXTENSIONS": {"scrapy.extensions.feedexport.FeedExporter": None,
                       "scrapy.extensions.spiderstate.SpiderState": None},
        "LOG_LEVEL": "INFO",
        "LOGSTATS_INTERVAL": LOGSTATS_INTERVAL_S,
    }
