"""What a crawl folder already holds, and the merge that turns it into the final snapshot files.

Entries come from the last merged output (`articles.jsonl`, and `failures.jsonl` rows that carry the id of
their entry) and from the journal of an unfinished run; the journal, newest line last, wins. An entry with
its article and all the attachments it could get is stored: not fetched again. An entry whose page failed, or
one of whose attachments failed for a reason that may pass (a timeout, a 5xx, a cut-off body), is fetched again
by the next run, whose outcome replaces it (PDFs already stored are not downloaded again). Rows without an entry id (listing-level failures) are not carried: each run
derives them afresh from the listing pages.
"""

from __future__ import annotations

from pathlib import Path

from bmw.io import dumps_line, read_jsonl
from bmw.params import ScrapeParams
from bmw.scrape.failures import is_transient
from bmw.scrape.journal import JOURNAL_NAME, read_journal

ARTICLES, FAILURES, SUMMARY, PDF_DIR = "articles.jsonl", "failures.jsonl", "crawl.json", "pdfs"
ARTICLE_ORDER, FAILURE_ORDER = "id", ("path", "kind", "article", "reason")


def load_entries(out_dir: Path) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    if (out_dir / ARTICLES).exists():
        for article in read_jsonl(out_dir / ARTICLES):
            entries[article["id"]] = {"id": article["id"], "article": article, "failures": []}
    if (out_dir / FAILURES).exists():
        for row in read_jsonl(out_dir / FAILURES):
            if row.get("article"):
                entry = entries.setdefault(row["article"], {"id": row["article"], "article": None, "failures": []})
                entry["failures"].append(row)
    for entry in read_journal(out_dir / JOURNAL_NAME):
        entries[entry["id"]] = entry
    return entries


def _files_present(out_dir: Path, article: dict) -> bool:
    return all((out_dir / a["file"]).is_file() for a in article["attachments"])


def _complete(entry: dict) -> bool:
    return not any(f["kind"] == "attachment" and is_transient(f["reason"]) for f in entry["failures"])


def stored_article_ids(out_dir: Path) -> frozenset[str]:
    """Articles a crawl must not fetch again; one whose PDFs went missing, or one whose attachment may download
    next time, is fetched again."""
    return frozenset(i for i, e in load_entries(out_dir).items()
                     if e["article"] is not None and _files_present(out_dir, e["article"]) and _complete(e))


def merge(entries: dict[str, dict], selection: list[dict], listing_failures: list[dict],
          params: ScrapeParams) -> tuple[list[dict], list[dict]]:
    """The snapshot: known articles with date <= until, the entries this run selected first (listing order),
    then older known ones newest first (a listing walk cut short by a failure loses no stored article),
    at most `target`; plus the failures of the entries kept and of this run's listing pages."""
    rank = {s["id"]: i for i, s in enumerate(selection)}
    until = params.until.isoformat()
    known = [e["article"] for e in entries.values() if e["article"] is not None and e["article"]["date"] <= until]
    selected = sorted((a for a in known if a["id"] in rank), key=lambda a: rank[a["id"]])
    others = sorted((a for a in known if a["id"] not in rank), key=lambda a: (a["date"], a["id"]), reverse=True)
    articles = (selected + others)[: params.target]
    kept = {a["id"] for a in articles} | rank.keys()
    rows = listing_failures + [f for i in sorted(kept) if i in entries for f in entries[i]["failures"]]
    return articles, list({dumps_line(r): r for r in rows}.values())  # same row twice: e.g. a link on two pages


def referenced_files(articles: list[dict]) -> set[str]:
    return {a["file"] for article in articles for a in article["attachments"]}
