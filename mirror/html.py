"""HTML pages of the mirror, in the live PressClub's markup (docs/contracts.md, "The press-site mirror")."""

from __future__ import annotations

from html import escape
from textwrap import shorten

from mirror.content import MirrorArticle, Release

SITE_NAME = "BMW Group PressClub"


def listing_path(page: int) -> str:
    return "/global/article/overview" if page == 1 else f"/global/article/overview?page={page}"


def _page(lang: str, title: str, canonical: str, main: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>{escape(title)} - {SITE_NAME}</title>
<link rel="canonical" href="{escape(canonical)}">
</head>
<body>
<header class="site-header"><a class="site-home" href="{listing_path(1)}">{SITE_NAME}</a></header>
<main>
{main}
</main>
<footer class="site-footer"><p>Offline mirror for testing. Texts written for this project.</p></footer>
</body>
</html>
"""


def _dmy(a: MirrorArticle) -> str:
    return a.date.strftime("%d.%m.%Y")


def listing_page(entries: list[tuple[MirrorArticle, str]], page: int, last_page: int) -> str:
    """One page of the newsfeed: (article, the detail path this entry links to), newest first."""
    items = []
    for a, path in entries:
        teaser = shorten(a.paragraphs[0], 160, placeholder=" ...")
        items.append(f"""<article class="newsfeed" data-id="{a.id}">
<a class="newsfeed-link" href="{escape(path)}"><h3 class="newsfeed-title">{escape(a.title)}</h3></a>
<time datetime="{a.date.isoformat()}">{_dmy(a)}</time>
<p class="newsfeed-teaser">{escape(teaser)}</p>
</article>""")
    nav = []
    if page > 1:
        nav.append(f'<a class="pagination-prev" rel="prev" href="{escape(listing_path(page - 1))}">Previous</a>')
    nav.append(f'<span class="pagination-current">Page {page} of {last_page}</span>')
    if page < last_page:
        nav.append(f'<a class="pagination-next" rel="next" href="{escape(listing_path(page + 1))}">Next</a>')
    main = "<h1>Press Releases</h1>\n" + "\n".join(items) + f'\n<nav class="pagination">{" ".join(nav)}</nav>'
    return _page("en", f"Press Releases - page {page}", listing_path(page), main)


def article_page(release: Release) -> str:
    a = release.article
    paragraphs = "\n".join(f"<p>{escape(p)}</p>" for p in a.paragraphs)
    extra = ""
    if a.attachment_path:
        label = "Press release (PDF)" if a.language == "en" else "Pressemitteilung (PDF)"
        extra += (f'\n<div class="article-attachments"><h2>Attachments</h2>\n'
                  f'<a class="article-attachment" href="{a.attachment_path}">{label}</a>\n</div>')
    if release.links:
        links = "\n".join(f'<li><a href="{escape(href)}">{escape(text)}</a></li>' for href, text in release.links)
        extra += f'\n<div class="article-links"><h2>Related links</h2>\n<ul>\n{links}\n</ul>\n</div>'
    main = f"""<article class="article" data-id="{a.id}">
<h1 class="article-title">{escape(a.title)}</h1>
<time class="article-date" datetime="{a.date.isoformat()}">{_dmy(a)}</time>
<div class="article-text">
{paragraphs}
</div>{extra}
</article>"""
    return _page(a.language, a.title, a.path, main)


def internal_page(release: Release) -> str:
    """A page robots.txt forbids: a crawler that obeys robots never requests it."""
    a = release.article
    main = f'<h1>Internal preview</h1>\n<p>Draft of {escape(a.id)}: not for publication.</p>'
    return _page("en", "Internal preview", release.links[0][0], main)


def not_pdf_page() -> str:
    """What a broken attachment link serves with status 200: a login page, not a PDF."""
    main = '<h1>Your session has expired</h1>\n<p>Please sign in again to download this file.</p>'
    return _page("en", "Sign in", "/global/login", main)
