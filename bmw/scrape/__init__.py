"""Scrapy crawl of the press site: listing pages -> article pages -> PDF attachments (`crawl()`)."""

from bmw.scrape.runner import CrawlError, crawl

__all__ = ["CrawlError", "crawl"]
