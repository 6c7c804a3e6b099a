"""The scrape stage: real Scrapy crawls (in subprocesses) of the bundled mirror served on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bmw.io import read_jsonl, sha256_bytes
from bmw.params import ScrapeParams
from bmw.scrape import CrawlError, crawl
from bmw.scrape.journal import JOURNAL_NAME, Journal, read_journal
from bmw.scrape.selectors import PageError, parse_article, parse_listing
from bmw.scrape.settings import crawl_settings
from bmw.scrape.state import merge
from mirror.build import SITE_DIR, build_site
from mirror.content import BAD_CASES, POSITIONS, mirror_articles
from mirror.server import serve_site
from stages import scrape as scrape_stage

ROUTES = json.loads((SITE_DIR / "routes.json").read_text(encoding="utf-8"))
ARTICLES = mirror_articles()
TARGET = 40  # the mirror puts every bad case among its 40 newest entries
PARAMS = ScrapeParams(target=TARGET, concurrency=4, autothrottle=False, timeout_s=5, retries=2)
LISTING = "/global/article/overview"
# 20 entries per page, page 2 opens with the duplicate: the 40th article is the first entry of page 3
LISTING_PAGES = {LISTING: 1, f"{LISTING}?page=2": 1, f"{LISTING}?page=3": 1}


def served(path: str) -> bytes:
    return (SITE_DIR / ROUTES[path]["file"]).read_bytes()


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fetched(hits, prefix: str) -> dict[str, int]:
    return {path: n for path, n in hits.items() if path.startswith(prefix) and n}


def failures(out: Path) -> set[tuple]:
    return {(f["path"], f["kind"], f["reason"], f["article"]) for f in read_jsonl(out / "failures.jsonl")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted crawl with PARAMS: (folder, hits per path)."""
    out = tmp_path_factory.mktemp("reference")
    with serve_site() as site:
        summary = crawl(out, PARAMS, site.url)
        hits = dict(site.hits)
    assert summary["journaled"] == TARGET
    return out, hits


# --- end to end ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_crawl_finds_every_article_and_records_each_bad_case(reference):
    out, _ = reference
    rows = read_jsonl(out / "articles.jsonl")
    expected = ARTICLES[:TARGET]
    assert [r["id"] for r in rows] == sorted(a.id for a in expected)
    by_id = {r["id"]: r for r in rows}
    for a in expected:
        row = by_id[a.id]
        assert (row["path"], row["title"], row["date"], row["language"]) == \
            (a.path, a.title, a.date.isoformat(), a.language)
        assert row["body"] == "\n\n".join(a.paragraphs)
        if a.attachment in ("pdf", "corrupt", "image_only"):  # served as PDFs: stored; the cleaner judges them
            [att] = row["attachments"]
            data = served(a.attachment_path)
            assert att == {"path": a.attachment_path, "file": f"pdfs/{a.id}_1.pdf", "sha256": sha256_bytes(data),
                           "bytes": len(data)}
            assert (out / att["file"]).read_bytes() == data
        else:
            assert row["attachments"] == []
    assert by_id[BAD_CASES["german_release"]]["language"] == "de"
    on = {case: ARTICLES[pos].id for case, pos in POSITIONS.items()}  # the article each bad case sits on
    assert failures(out) == {
        (BAD_CASES["duplicate_url"], "article", f"duplicate of {on['duplicate_url']}", None),
        (BAD_CASES["missing_attachment"], "attachment", "http 404", on["missing_attachment"]),
        (BAD_CASES["not_pdf_attachment"], "attachment", "not a pdf", on["not_pdf_attachment"]),
        (BAD_CASES["offsite_link"], "link", "offsite", on["offsite_link"]),
        (BAD_CASES["robots_disallowed_link"], "link", "robots.txt", on["robots_disallowed_link"]),
    }
    stored = sum(a.attachment in ("pdf", "corrupt", "image_only") for a in expected)
    assert sorted(os.listdir(out / "pdfs")) == sorted(f"{a.id}_1.pdf" for a in expected
                                                      if a.attachment in ("pdf", "corrupt", "image_only"))
    assert json.loads((out / "crawl.json").read_text()) == {
        "source": "bundled", "until": "2026-12-31", "target": TARGET, "articles": TARGET, "failures": 5,
        "pdfs": stored}
    assert not (out / JOURNAL_NAME).exists()
    assert "127.0.0.1" not in (out / "articles.jsonl").read_text() + (out / "failures.jsonl").read_text()


@pytest.mark.slow
def test_reference_crawl_fetched_each_page_once_and_never_the_forbidden_one(reference):
    _, hits = reference
    assert hits["/robots.txt"] == 1
    assert fetched(hits, LISTING) == LISTING_PAGES  # pagination stops once the target is met
    assert set(fetched(hits, "/global/article/detail/")) == {a.path for a in ARTICLES[:TARGET]}
    assert set(fetched(hits, "/global/article/detail/").values()) == {1}
    assert not fetched(hits, "/global/internal/")


@pytest.mark.slow
def test_two_fresh_crawls_are_byte_identical(reference, tmp_path):
    with serve_site() as site:  # another port
        crawl(tmp_path, PARAMS, site.url)
    assert tree(tmp_path) == tree(reference[0])


@pytest.mark.slow
def test_rerun_fetches_only_listing_pages_and_changes_nothing(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path, dirs_exist_ok=True)
    with serve_site() as site:
        summary = crawl(tmp_path, PARAMS, site.url)
        assert {p for p, n in site.hits.items() if n} == {"/robots.txt", *LISTING_PAGES}
    assert summary["journaled"] == 0
    assert tree(tmp_path) == tree(reference[0])


@pytest.mark.slow
def test_retries_recorded_failures_and_a_failed_article_retried_by_the_next_run(tmp_path):
    page2, slow, broken, gone = f"{LISTING}?page=2", ARTICLES[5], ARTICLES[6], ARTICLES[7]
    faults = {page2: [503], slow.path: ["timeout"], broken.attachment_path: [503, 503, 503], gone.path: [404]}
    params = ScrapeParams(target=25, concurrency=4, autothrottle=False, timeout_s=2, retries=2)
    with serve_site(faults=faults) as site:
        crawl(tmp_path, params, site.url)
        assert [site.hits[p] for p in (page2, slow.path, broken.attachment_path, gone.path)] == [2, 2, 3, 1]
        ids = {r["id"]: r for r in read_jsonl(tmp_path / "articles.jsonl")}
        assert set(ids) == {a.id for a in ARTICLES[:25]} - {gone.id}  # page 2 and the slow article made it
        assert ids[slow.id]["attachments"][0]["file"] == f"pdfs/{slow.id}_1.pdf"
        assert ids[broken.id]["attachments"] == [] and not (tmp_path / f"pdfs/{broken.id}_1.pdf").exists()
        first = failures(tmp_path)
        assert {(broken.attachment_path, "attachment", "http 503 after 2 retries", broken.id),
                (gone.path, "article", "http 404", gone.id)} <= first

        before = dict(site.hits)
        summary = crawl(tmp_path, params, site.url)  # the faults are used up: the site is well now
        again = {p for p, n in site.hits.items() if n > before.get(p, 0)}
    # only the failed article, and the one whose attachment failed for a reason that may pass (503)
    assert again == {"/robots.txt", LISTING, page2, gone.path, gone.attachment_path, broken.path,
                     broken.attachment_path}
    assert summary["journaled"] == 2 and summary["articles"] == 25
    assert (tmp_path / f"pdfs/{broken.id}_1.pdf").read_bytes() == served(broken.attachment_path)
    assert failures(tmp_path) == first - {(gone.path, "article", "http 404", gone.id),
                                          (broken.attachment_path, "attachment", "http 503 after 2 retries", broken.id)}


@pytest.mark.slow
def test_until_and_target_bound_the_snapshot_and_a_smaller_rerun_prunes_it(tmp_path):
    until = ARTICLES[2].date  # the two newest releases are after the cut-off
    assert ARTICLES[1].date > until > ARTICLES[3].date
    params = ScrapeParams(until=until, target=8, concurrency=4, autothrottle=False, timeout_s=5,
                          max_pdf_mb=0.01)  # 10 KiB: the image-only PDF (position 8) is larger
    with serve_site() as site:
        crawl(tmp_path, params, site.url)
        assert not fetched(site.hits, f"{LISTING}?page=")  # the target was met on page 1
    rows = read_jsonl(tmp_path / "articles.jsonl")
    assert [r["id"] for r in rows] == sorted(a.id for a in ARTICLES[2:10])
    image_only = BAD_CASES["image_only_pdf"]
    assert (f"/global/article/attachment/{image_only}/1", "attachment", "too large", image_only) in failures(tmp_path)

    (tmp_path / "pdfs" / ".T0400000EN_1.pdf.x.tmp").write_bytes(b"%PDF-1.4 cut off by a kill")
    smaller = params.model_copy(update={"target": 3})
    with serve_site() as site:
        summary = crawl(tmp_path, smaller, site.url)
        assert not fetched(site.hits, "/global/article/detail/")
    assert summary["articles"] == 3 and summary["failures"] == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "articles.jsonl")] == sorted(a.id for a in ARTICLES[2:5])
    assert sorted(os.listdir(tmp_path / "pdfs")) == sorted(f"{a.id}_1.pdf" for a in ARTICLES[2:5])


@pytest.mark.slow
def test_the_stage_crawls_a_scaled_mirror_named_by_scrape_source(tmp_path, monkeypatch):
    """`scrape.source: mirror:DIR` serves a site built by `bmw mirror build --releases N --out DIR` on 127.0.0.1."""
    build_site(tmp_path / "site", count=150)
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    data["scrape"] |= {"source": "mirror:site", "until": "2026-12-31", "target": 1000, "timeout_s": 5}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    scrape_stage.main()
    summary = json.loads(Path("data/raw/crawl.json").read_text())
    assert summary["source"] == "mirror:site" and summary["articles"] == 150 and summary["failures"] == 5
    assert [r["id"] for r in read_jsonl(Path("data/raw/articles.jsonl"))] == sorted(a.id for a in
                                                                                    mirror_articles(0, 150))


RUNNER = ("import sys; from pathlib import Path; from bmw.scrape import crawl; from bmw.params import ScrapeParams;"
          "crawl(Path(sys.argv[1]), ScrapeParams.model_validate_json(sys.argv[2]), sys.argv[3])")


def _start_runner(out: Path, url: str, log: Path) -> subprocess.Popen:
    """The stage's process (what DVC runs), which starts the crawl process."""
    with log.open("wb") as f:
        return subprocess.Popen([sys.executable, "-c", RUNNER, str(out), PARAMS.model_dump_json(), url],
                                stdout=f, stderr=subprocess.STDOUT)


def _crawl_process(runner: subprocess.Popen, log: Path) -> int:
    deadline = time.monotonic() + 30
    while True:
        children = [int(st.parent.name) for st in Path("/proc").glob("[0-9]*/stat") if _ppid(st) == runner.pid]
        if children:
            return children[0]
        assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def _stat(stat: Path) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, ...; [] once the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _ppid(stat: Path) -> int:
    fields = _stat(stat)
    return int(fields[1]) if fields else -1


def _wait_gone(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (_stat(Path(f"/proc/{pid}/stat")) or ["Z"])[0] != "Z":  # a zombie has stopped running
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_midway_then_rerun_equals_an_uninterrupted_crawl(reference, tmp_path):
    out, log = tmp_path / "raw", tmp_path / "crawl.log"
    with serve_site(delay_s=0.15) as site:
        runner = _start_runner(out, site.url, log)
        crawler = _crawl_process(runner, log)
        deadline = time.monotonic() + 60
        while len(read_journal(out / JOURNAL_NAME)) < 5:
            assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.kill(crawler, signal.SIGKILL)
        assert runner.wait(30) == 1 and "exited with status -9" in log.read_text()
        journaled = {e["id"]: e for e in read_journal(out / JOURNAL_NAME)}
        assert 5 <= len(journaled) < TARGET and not (out / "articles.jsonl").exists()
        before = dict(site.hits)

        summary = crawl(out, PARAMS, site.url)
        again = {p for p, n in site.hits.items() if n > before.get(p, 0)}
    finished = {e["article"]["path"] for e in journaled.values() if e["article"]}
    finished |= {a["path"] for e in journaled.values() if e["article"] for a in e["article"]["attachments"]}
    assert finished and not finished & again  # nothing journaled before the kill was fetched again
    assert summary["journaled"] == TARGET - len(journaled)
    assert tree(out) == tree(reference[0])


@pytest.mark.slow
def test_the_crawl_process_stops_when_its_runner_is_killed(tmp_path):
    log = tmp_path / "crawl.log"
    with serve_site(delay_s=0.5) as site:  # a mirror that outlives the runner, as in the test above
        runner = _start_runner(tmp_path / "raw", site.url, log)
        crawler = _crawl_process(runner, log)
        runner.kill()
        runner.wait()
        _wait_gone(crawler, 20)
    assert "runner gone: stopping the crawl" in log.read_text()
    assert not (tmp_path / "raw" / "articles.jsonl").exists()


def _tiny_site(folder: Path) -> Path:
    """Two releases that attach the same file: Scrapy downloads it once, each article keeps its own copy."""
    pages = {
        "/robots.txt": ("text/plain", b"User-agent: *\nDisallow:\n"),
        LISTING: ("text/html", b"""<html lang="en"><body>
<article class="newsfeed" data-id="T0000002EN"><a class="newsfeed-link" href="/global/article/detail/T0000002EN/b">
<h3 class="newsfeed-title">Second</h3></a><time datetime="2025-02-01">1.2.2025</time></article>
<article class="newsfeed" data-id="T0000001EN"><a class="newsfeed-link" href="/global/article/detail/T0000001EN/a">
<h3 class="newsfeed-title">First from the listing</h3></a><time datetime="2025-01-01">1.1.2025</time></article>
</body></html>"""),
        "/global/article/detail/T0000002EN/b": ("text/html", b"""<html lang="en"><body>
<h1 class="article-title">Second</h1><time class="article-date" datetime="2025-02-01"></time>
<div class="article-text"><p>Two.</p></div><a class="article-attachment" href="/files/shared">PDF</a></body></html>"""),
        "/global/article/detail/T0000001EN/a": ("text/html", b"""<html lang="en"><body>
<div class="article-text"><p>One.</p></div><a class="article-attachment" href="/files/shared">PDF</a></body></html>"""),
        "/files/shared": ("application/pdf", b"%PDF-1.4 shared attachment"),
    }
    routes = {}
    for i, (path, (ctype, body)) in enumerate(pages.items()):
        (folder / f"{i}.bin").write_bytes(body)
        routes[path] = {"file": f"{i}.bin", "status": 200, "type": ctype}
    (folder / "routes.json").write_text(json.dumps(routes), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_an_attachment_shared_by_two_releases_is_stored_under_each_name(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    with serve_site(_tiny_site(site_dir)) as site:
        crawl(tmp_path / "raw", PARAMS, site.url)
        assert site.hits["/files/shared"] == 1
    first, second = read_jsonl(tmp_path / "raw" / "articles.jsonl")
    assert (first["title"], first["date"]) == ("First from the listing", "2025-01-01")  # the page has neither
    assert [a["file"] for a in first["attachments"] + second["attachments"]] == \
        ["pdfs/T0000001EN_1.pdf", "pdfs/T0000002EN_1.pdf"]
    assert {a["path"] for a in first["attachments"] + second["attachments"]} == {"/files/shared"}
    for a in first["attachments"] + second["attachments"]:
        assert (tmp_path / "raw" / a["file"]).read_bytes() == b"%PDF-1.4 shared attachment"


@pytest.mark.slow
def test_an_unreachable_site_is_an_error_naming_the_listing_and_the_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    with pytest.raises(CrawlError, match=f"{LISTING}: connection refused"):
        crawl(tmp_path, PARAMS.model_copy(update={"retries": 0}), url)
    assert not (tmp_path / "articles.jsonl").exists()


# --- units --------------------------------------------------------------------------------------------------


def test_journal_drops_a_line_cut_off_by_a_kill(tmp_path):
    path = tmp_path / JOURNAL_NAME
    path.write_text('{"id": "A", "article": null, "failures": []}\n{"id": "B", "artic', encoding="utf-8")
    assert [e["id"] for e in read_journal(path)] == ["A"]
    journal = Journal(path)
    journal.append({"id": "C", "article": None, "failures": []})
    journal.close()
    assert [e["id"] for e in read_journal(path)] == ["A", "C"]


def _article(i: str, date: str) -> dict:
    return {"id": i, "path": f"/d/{i}", "title": i, "date": date, "language": "en", "body": "", "attachments": []}


def test_merge_applies_until_target_and_keeps_failures_of_kept_entries_only():
    entries = {
        "T1": {"id": "T1", "article": _article("T1", "2025-03-01"), "failures": []},  # after until
        "T2": {"id": "T2", "article": _article("T2", "2025-02-01"),
               "failures": [{"path": "/a/T2", "kind": "attachment", "reason": "http 404", "article": "T2"}]},
        "T3": {"id": "T3", "article": None,
               "failures": [{"path": "/d/T3", "kind": "article", "reason": "timeout", "article": "T3"}]},
        "T4": {"id": "T4", "article": _article("T4", "2025-01-01"),
               "failures": [{"path": "/a/T4", "kind": "attachment", "reason": "not a pdf", "article": "T4"}]},
    }
    listing = [{"path": "/d/T9-b", "kind": "article", "reason": "duplicate of T9", "article": None}]
    params = ScrapeParams(until=dt.date(2025, 2, 15), target=2)
    articles, rows = merge(entries, [{"id": "T2", "path": "/d/T2"}, {"id": "T3", "path": "/d/T3"}], listing, params)
    # T3 failed, so one slot is left: filled by the newest stored article not selected this run
    assert [a["id"] for a in articles] == ["T2", "T4"]
    assert {r["path"] for r in rows} == {"/d/T9-b", "/a/T2", "/d/T3", "/a/T4"}
    articles, rows = merge(entries, [{"id": "T2", "path": "/d/T2"}], [], params.model_copy(update={"target": 1}))
    assert [a["id"] for a in articles] == ["T2"] and {r["path"] for r in rows} == {"/a/T2"}


def test_selectors_read_the_mirror_pages_and_name_what_is_missing():
    listing = parse_listing(served(LISTING).decode())
    assert [e.id for e in listing.entries] == [a.id for a in ARTICLES[:20]]
    assert listing.next_href == f"{LISTING}?page=2"
    page = parse_article(served(ARTICLES[0].path).decode())
    assert (page.title, page.date, page.paragraphs) == (ARTICLES[0].title, ARTICLES[0].date,
                                                        list(ARTICLES[0].paragraphs))
    with pytest.raises(PageError, match="no language"):
        parse_article("<html><body><h1 class='article-title'>T</h1></body></html>")
    with pytest.raises(PageError, match="bad article date '2025-13-01'"):
        parse_article("<html lang='en'><time class='article-date' datetime='2025-13-01'></time></html>")
    bad = parse_listing('<article class="newsfeed" data-id="T1"><a class="newsfeed-link" href="/d/T1"></a>'
                        '<time datetime="31.12.2025"></time></article>')
    assert [str(e) for e in bad.entries] == ["bad date '31.12.2025'"]


def test_settings_follow_params():
    params = ScrapeParams(obey_robots=False, concurrency=3, delay_s=1.5, timeout_s=7, retries=4, max_pdf_mb=2,
                          user_agent="ua/1")
    s = crawl_settings(params, Path("/x"))
    assert (s["ROBOTSTXT_OBEY"], s["CONCURRENT_REQUESTS_PER_DOMAIN"], s["DOWNLOAD_DELAY"], s["DOWNLOAD_TIMEOUT"],
            s["RETRY_TIMES"], s["PDF_MAX_BYTES"], s["USER_AGENT"]) == (False, 3, 1.5, 7, 4, 2 * 1024 * 1024, "ua/1")
    assert s["TELNETCONSOLE_ENABLED"] is False and s["MEDIA_ALLOW_REDIRECTS"] is True
