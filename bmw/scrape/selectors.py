"""Every CSS selector the spider uses, and the pure functions that turn a page into plain data.

Kept in one module so that adapting the crawler to a changed site markup touches one file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from lxml import etree, html
from parsel import Selector

LISTING_ENTRY = "article.newsfeed"
LISTING_ID = "::attr(data-id)"
LISTING_LINK = "a.newsfeed-link::attr(href)"
LISTING_TITLE = "h3.newsfeed-title"
LISTING_DATE = "time::attr(datetime)"
LISTING_NEXT = "a.pagination-next[rel=next]::attr(href)"

ARTICLE_TITLE = "h1.article-title"
ARTICLE_DATE = "time.article-date::attr(datetime)"
ARTICLE_LANGUAGE = "html::attr(lang)"
ARTICLE_PARAGRAPHS = "div.article-text p"
ARTICLE_ATTACHMENTS = "a.article-attachment::attr(href)"
ARTICLE_LINKS = "div.article-links a::attr(href)"  # related links: only checked (offsite, robots.txt), not crawled

# An entry id names the release's files (pdfs/<id>_<n>.pdf): letters, digits, "_" and "-", so that no id can
# reach outside the crawl folder ("../x", "/etc/x") or hide a file (".x").
ENTRY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class PageError(ValueError):
    """A page that lacks a field the snapshot needs; the message names the field."""


@dataclass(frozen=True)
class ListingEntry:
    id: str
    href: str
    title: str
    date: dt.date


@dataclass(frozen=True)
class ListingPage:
    entries: list[ListingEntry | PageError]  # in page order; a malformed entry is kept as its error
    next_href: str | None


@dataclass(frozen=True)
class ArticlePage:
    title: str  # "" when the page has none: the listing entry's title stands in
    date: dt.date | None  # None when the page has none: the listing entry's date stands in
    language: str
    paragraphs: list[str]
    attachment_hrefs: list[str]  # unique, in page order
    link_hrefs: list[str]  # unique, in page order


def _text(sel: Selector) -> str:
    """Visible text of an element with runs of whitespace (incl. newlines, nbsp) collapsed."""
    return " ".join(" ".join(sel.css("::text").getall()).split())


def _hrefs(sel: Selector, query: str) -> list[str]:
    return list(dict.fromkeys(h.strip() for h in sel.css(query).getall() if h.strip()))


def _date(value: str | None, field: str) -> dt.date:
    if not value:
        raise PageError(f"no {field}")
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise PageError(f"bad {field} {value.strip()!r}") from None


def _selector(text: str) -> Selector:
    """The page parsed as parsel does, refused where libxml2 stopped early: past 2048 nested elements it drops the
    rest of the page without an error, so an article would lose its text and attachments silently."""
    parser = html.HTMLParser(recover=True, encoding="utf-8", huge_tree=True)
    body = text.strip().replace("\x00", "").encode("utf-8") or b"<html/>"  # as parsel prepares a page
    root = etree.fromstring(body, parser)
    if any(e.type_name == "ERR_RESOURCE_LIMIT" for e in parser.error_log):
        raise PageError("markup nested too deeply to parse whole")
    return Selector(root=root if root is not None else etree.fromstring(b"<html/>", parser), type="html")


def _entry(sel: Selector) -> ListingEntry | PageError:
    try:
        entry_id = (sel.css(LISTING_ID).get() or "").strip()
        href = (sel.css(LISTING_LINK).get() or "").strip()
        if not entry_id:
            raise PageError("listing entry without data-id")
        if not ENTRY_ID.fullmatch(entry_id):
            raise PageError(f"listing entry with an unusable data-id {entry_id[:70]!r}")
        if not href:
            raise PageError(f"listing entry {entry_id} without link")
        return ListingEntry(entry_id, href, _text(sel.css(LISTING_TITLE)), _date(sel.css(LISTING_DATE).get(), "date"))
    except PageError as e:
        return e


def parse_listing(text: str) -> ListingPage:
    sel = _selector(text)
    nxt = sel.css(LISTING_NEXT).get()
    return ListingPage([_entry(e) for e in sel.css(LISTING_ENTRY)], nxt.strip() if nxt else None)


def parse_article(text: str) -> ArticlePage:
    sel = _selector(text)
    date = sel.css(ARTICLE_DATE).get()
    language = (sel.css(ARTICLE_LANGUAGE).get() or "").strip().lower().split("-")[0]
    if not language:
        raise PageError("no language (html lang)")
    paragraphs = [t for t in (_text(p) for p in sel.css(ARTICLE_PARAGRAPHS)) if t]  # may be empty: PDF-only release
    return ArticlePage(_text(sel.css(ARTICLE_TITLE)), _date(date, "article date") if date else None, language,
                       paragraphs, _hrefs(sel, ARTICLE_ATTACHMENTS), _hrefs(sel, ARTICLE_LINKS))
