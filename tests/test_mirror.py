"""The bundled press-site mirror: generated content, committed site, PDFs and the HTTP server."""

from __future__ import annotations

import io
import json
import re
import threading
import time
import urllib.error
import urllib.request

import pypdf
import pytest
from parsel import Selector

from mirror import SITE_DIR, corpus
from mirror.build import build_site
from mirror.content import (
    BAD_CASES,
    FIRST_DAY,
    LAST_DAY,
    _context,
    bad_cases,
    format_date,
    mirror_articles,
    mirror_releases,
)
from mirror.layout import hyphen_points
from mirror.pdf import header_lines
from mirror.server import serve_site

ROUTES = json.loads((SITE_DIR / "routes.json").read_text(encoding="utf-8"))
GOOD = [a for a in mirror_articles() if a.attachment == "pdf" and a.language == "en"]


def fetch(url: str, timeout: float = 5.0, method: str = "GET") -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def pdf_text(data: bytes) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(io.BytesIO(data)).pages]


@pytest.fixture(scope="module")
def server():
    with serve_site() as s:
        yield s


# --- content -----------------------------------------------------------------------------------------------


def test_generation_is_deterministic_and_seeded():
    first = mirror_articles(0)
    mirror_releases.cache_clear()
    assert mirror_articles(0) == first
    other = mirror_articles(1)
    assert [a.title for a in other] != [a.title for a in first]


def test_enough_good_articles_newest_first_and_unique():
    articles = mirror_articles()
    assert len(GOOD) >= 100
    assert [a.date for a in articles] == sorted((a.date for a in articles), reverse=True)
    assert FIRST_DAY <= articles[-1].date and articles[0].date <= LAST_DAY
    assert len({a.date.strftime("%Y-%m") for a in articles}) >= 24  # spread over the whole period
    assert len({a.id for a in articles}) == len(articles)
    assert len({a.title for a in articles}) == len(articles)
    for a in articles:
        assert re.fullmatch(r"T0\d{6}(EN|DE)", a.id) and a.id.endswith(a.language.upper())
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", a.slug)
        assert 3 <= len(a.paragraphs) <= 7 and len(set(a.paragraphs)) == len(a.paragraphs)
    assert {a.pdf_pages for a in GOOD} == {1, 2, 3}


def test_paragraphs_carry_concrete_facts():
    text = "\n".join(p for a in GOOD for p in a.paragraphs)
    assert re.search(r"\b\d{1,2} (January|March|June|October) 20\d\d\b", text)
    assert re.search(r"\b\d{1,3},\d{3} (vehicles|motorcycles)\b", text)
    assert re.search(r"\b\d+ per cent\b", text) and re.search(r"EUR \d+ million", text)
    for name in ("BMW iX3", "MINI", "Rolls-Royce", "BMW M Hybrid V8", "Neue Klasse", "Debrecen", "BMW Motorrad"):
        assert name in text, name
    sentences = [s for a in GOOD for p in a.paragraphs for s in re.split(r"(?<=\.) ", p)]
    assert len(set(sentences)) > 0.8 * len(sentences)


def test_every_template_fills_and_stays_latin1():
    import random

    ctx = _context(random.Random(0), FIRST_DAY) | {"date_de": "1. Januar 2024"}
    templates = [t for pool in corpus.SENTENCES.values() for t in pool]
    templates += [t for pool in corpus.TITLES.values() for t in pool]
    templates += [corpus.GERMAN_TITLE, *corpus.GERMAN_PARAGRAPHS, corpus.FIGURES_NOTE]
    for t in templates:
        t.format(**ctx).encode("latin-1")


def test_body_never_looks_like_boilerplate():
    """Ground-truth sentences must survive a cleaner: none carries a marker of the PDF boilerplate."""
    markers = re.compile(r"Telephone|E-mail|@|www\.|Internet|Corporate Communications|Media Information|"
                         r"consumption combined|emissions combined|The figures for fuel|For further information|"
                         r"\bPage\b|\bDate\b|\bSubject\b")
    for a in mirror_articles():
        for p in a.paragraphs:
            assert not markers.search(p), (a.id, p)


def test_bad_cases_are_present_once():
    by_id = {a.id: a for a in mirror_articles()}
    assert by_id[BAD_CASES["corrupt_pdf"]].attachment == "corrupt"
    assert by_id[BAD_CASES["image_only_pdf"]].attachment == "image_only"
    assert by_id[BAD_CASES["german_release"]].language == "de"
    assert [a.language for a in by_id.values()].count("de") == 1
    for kind in ("corrupt", "image_only", "missing", "not_pdf"):
        assert [a.attachment for a in by_id.values()].count(kind) == 1, kind
    assert BAD_CASES["missing_attachment"] not in ROUTES
    assert ROUTES[BAD_CASES["not_pdf_attachment"]]["type"].startswith("text/html")
    assert BAD_CASES["offsite_link"].startswith("https://www.bmwgroup.com/")
    assert BAD_CASES["robots_disallowed_link"].startswith("/global/internal/")
    dup = BAD_CASES["duplicate_url"]
    article = next(a for a in by_id.values() if dup.startswith(f"/global/article/detail/{a.id}/"))
    assert dup != article.path and ROUTES[dup] == ROUTES[article.path]


# --- site files --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_committed_site_equals_a_fresh_build(tmp_path):
    build_site(tmp_path)
    fresh = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {p.relative_to(SITE_DIR).as_posix(): p.read_bytes() for p in SITE_DIR.rglob("*") if p.is_file()}
    assert sorted(fresh) == sorted(committed)
    assert [f for f in fresh if fresh[f] != committed[f]] == []
    assert sum(map(len, committed.values())) < 3_000_000


@pytest.mark.slow
def test_a_scaled_site_builds_deterministically_with_the_bundled_spread_and_other_releases(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    build_site(first, count=150)
    mirror_releases.cache_clear()
    build_site(second, count=150)
    files = {p.relative_to(first).as_posix(): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert files == {p.relative_to(second).as_posix(): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    scaled, bundled = mirror_articles(0, 150), mirror_articles()
    assert len({a.id for a in scaled}) == len({a.title for a in scaled}) == 150
    assert not {a.id for a in scaled} & {a.id for a in bundled}  # other releases, not the bundled ones extended
    assert sum(f.startswith("detail/") for f in files) == 150 and sum(f.endswith(".pdf") for f in files) == 146
    for a in scaled:
        assert re.fullmatch(r"T0\d{6}(EN|DE)", a.id) and 3 <= len(a.paragraphs) <= 7
    good = [a for a in scaled if a.attachment == "pdf" and a.language == "en"]
    assert {a.pdf_pages for a in good} == {1, 2, 3}
    scaled_chars, bundled_chars = (sum(len(" ".join(a.paragraphs)) for a in arts) / len(arts) for arts in (good, GOOD))
    assert abs(scaled_chars / bundled_chars - 1) < 0.15  # the bundled site's length spread
    cases, routes = bad_cases(0, 150), json.loads(files["routes.json"])
    assert cases["missing_attachment"] not in routes and cases["duplicate_url"] in routes
    assert routes[cases["not_pdf_attachment"]]["type"].startswith("text/html")
    with pytest.raises(ValueError, match="bundled site has 116 releases"):
        build_site(SITE_DIR, count=150)


def test_routes_point_at_files():
    for path, route in ROUTES.items():
        assert path.startswith("/") and (SITE_DIR / route["file"]).is_file(), path
        assert route["status"] == 200 and route["type"]


def test_listing_pages_chain_and_cover_every_article():
    pages, path = [], "/global/article/overview"
    while path:
        sel = Selector(text=(SITE_DIR / ROUTES[path]["file"]).read_text(encoding="utf-8"))
        pages.append(sel)
        path = sel.css("a.pagination-next[rel=next]::attr(href)").get()
    assert len(pages) >= 5
    entries = [(e.attrib["data-id"], e.css("a.newsfeed-link::attr(href)").get(),
                e.css("h3.newsfeed-title::text").get(), e.css("time::attr(datetime)").get())
               for sel in pages for e in sel.css("article.newsfeed")]
    assert all(len(sel.css("article.newsfeed")) == 20 for sel in pages[:-1])
    articles = mirror_articles()
    assert [e[0] for e in entries if e[1] != BAD_CASES["duplicate_url"]] == [a.id for a in articles]
    assert [e[3] for e in entries] == sorted((e[3] for e in entries), reverse=True)
    by_id = {a.id: a for a in articles}
    for id_, href, title, date in entries:
        assert title == by_id[id_].title and date == by_id[id_].date.isoformat() and href in ROUTES
    dup_pages = [i for i, sel in enumerate(pages) if sel.css(f'a[href="{BAD_CASES["duplicate_url"]}"]')]
    assert len(dup_pages) == 1


def test_article_pages_match_ground_truth():
    for a in mirror_articles():
        sel = Selector(text=(SITE_DIR / ROUTES[a.path]["file"]).read_text(encoding="utf-8"))
        assert sel.css("html::attr(lang)").get() == a.language
        assert sel.css("h1.article-title::text").get() == a.title
        assert sel.css("time.article-date::attr(datetime)").get() == a.date.isoformat()
        assert sel.css('link[rel="canonical"]::attr(href)').get() == a.path
        assert tuple(sel.css("div.article-text p::text").getall()) == a.paragraphs
        assert sel.css("a.article-attachment::attr(href)").getall() == ([a.attachment_path] if a.attachment_path
                                                                         else [])


def _strip_running_lines(article, pages: list[str]) -> str:
    """The page text minus header and footer lines, wraps joined, hyphenation undone."""
    release = next(r for r in mirror_releases() if r.article == article)
    lines = []
    for n, text in enumerate(pages, start=1):
        page = text.split("\n")
        head = header_lines(release, n)
        assert page[: len(head)] == head and page[-1] == str(n), (article.id, n)
        lines += page[len(head) : -1]
    return re.sub(r"(?<=[a-z])- (?=[a-z])", "", " ".join(lines))


@pytest.fixture(scope="module")
def good_pdf_pages() -> dict[str, list[str]]:
    return {a.id: pdf_text((SITE_DIR / ROUTES[a.attachment_path]["file"]).read_bytes()) for a in GOOD}


def test_pdfs_carry_every_body_paragraph_and_the_boilerplate(good_pdf_pages):
    hyphenated = disclaimed = 0
    for a in GOOD:
        pages = good_pdf_pages[a.id]
        assert len(pages) == a.pdf_pages
        raw = "\n".join(pages)
        hyphenated += len(re.findall(r"[a-z]-\n[a-z]", raw))
        body = _strip_running_lines(a, pages)
        for p in a.paragraphs:
            assert p in body, (a.id, p)
        for line in ("For further information please contact:", "Internet: www.press.bmwgroup.com", "The BMW Group"):
            assert f"\n{line}\n" in raw, (a.id, line)
        assert re.search(r"^Telephone: \+49 89 382-\d{5}$", raw, re.M)
        assert re.search(r"^E-mail: [a-z]+\.[a-z]+@bmwgroup\.com$", raw, re.M)
        if re.search(r"^(Fuel|Power) consumption combined: ", raw, re.M):
            disclaimed += 1
            assert re.search(r"^CO2 emissions combined: [\d-]+ g/km$", raw, re.M)
            assert "\nThe figures for fuel consumption" in raw
    assert hyphenated >= 50
    assert 20 <= disclaimed < len(GOOD)


def test_hyphenation_splits_only_plain_words():
    assert hyphen_points("production")
    for word in ("plug-in", "BMW", "Debrecen", "12,480", "short"):
        assert hyphen_points(word) == []


def test_pdf_bytes_are_deterministic():
    from mirror.pdf import render_pdf

    release = next(r for r in mirror_releases() if r.article.attachment == "pdf")
    assert render_pdf(release) == render_pdf(release) == (SITE_DIR / ROUTES[release.article.attachment_path]
                                                          ["file"]).read_bytes()


# --- server ------------------------------------------------------------------------------------------------


def test_server_serves_the_site(server):
    status, ctype, body = fetch(server.url + "/robots.txt")
    assert status == 200 and b"Disallow: /global/internal/" in body and ctype.startswith("text/plain")
    status, _, body = fetch(server.url + "/global/article/overview?page=2")
    assert status == 200 and b'rel="next"' in body and b'class="newsfeed"' in body
    a = GOOD[0]
    status, _, body = fetch(server.url + a.path)
    assert status == 200 and a.title.encode() in body
    status, ctype, body = fetch(server.url + a.attachment_path)
    assert status == 200 and ctype == "application/pdf" and body.startswith(b"%PDF")
    assert len(pdf_text(body)) == a.pdf_pages
    assert fetch(server.url + "/global/article/detail/T0999999EN/nothing")[0] == 404
    assert fetch(server.url + BAD_CASES["missing_attachment"])[0] == 404
    status, _, body = fetch(server.url + "/global/article/overview", method="HEAD")
    assert status == 200 and body == b""


def test_server_bad_attachments(server):
    by_id = {a.id: a for a in mirror_articles()}
    corrupt = fetch(server.url + by_id[BAD_CASES["corrupt_pdf"]].attachment_path)[2]
    assert corrupt.startswith(b"%PDF")
    with pytest.raises(pypdf.errors.PdfReadError):
        pdf_text(corrupt)
    image = by_id[BAD_CASES["image_only_pdf"]]
    pages = pdf_text(fetch(server.url + image.attachment_path)[2])
    assert len(pages) == image.pdf_pages >= 1 and "".join(pages).strip() == ""
    status, ctype, body = fetch(server.url + BAD_CASES["not_pdf_attachment"])
    assert status == 200 and ctype.startswith("text/html") and not body.startswith(b"%PDF")
    german = fetch(server.url + by_id[BAD_CASES["german_release"]].path)[2]
    assert b'<html lang="de">' in german


def test_faults_hits_and_timeout():
    path = "/global/article/overview"
    with serve_site(faults={path: [503, 429, "timeout"], "/robots.txt": [500]}) as s:
        assert [fetch(s.url + path)[0] for _ in range(2)] == [503, 429]
        t0 = time.monotonic()
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            fetch(s.url + path, timeout=0.5)
        assert time.monotonic() - t0 < 3
        assert fetch(s.url + path)[0] == 200  # queue consumed: normal serving again
        assert fetch(s.url + "/robots.txt")[0] == 500 and fetch(s.url + "/robots.txt")[0] == 200
        fetch(s.url + path + "?page=3")
        assert s.hits[path] == 4 and s.hits[path + "?page=3"] == 1 and s.hits["/robots.txt"] == 2


def test_shutdown_is_not_blocked_by_held_requests():
    outcome: list[BaseException | tuple] = []

    def client(url: str) -> None:
        try:
            outcome.append(fetch(url, timeout=30))
        except Exception as e:  # the held request is dropped at shutdown, without a response
            outcome.append(e)

    with serve_site(faults={"/robots.txt": ["timeout"]}) as s:
        worker = threading.Thread(target=client, args=(s.url + "/robots.txt",))
        worker.start()
        while not s.hits["/robots.txt"]:
            time.sleep(0.01)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 2
    worker.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], Exception)


def test_delay_slows_every_response():
    with serve_site(delay_s=0.3) as s:
        t0 = time.monotonic()
        assert fetch(s.url + "/robots.txt")[0] == 200
        assert time.monotonic() - t0 >= 0.3


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="faults\\['/x'\\]"):
        with serve_site(faults={"/x": ["slow"]}):
            pass
    with pytest.raises(FileNotFoundError, match="routes.json"):
        with serve_site(tmp_path):
            pass
    assert format_date(FIRST_DAY) == "8 January 2024"
