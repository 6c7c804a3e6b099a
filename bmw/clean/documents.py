"""The clean stage's records: one document per usable article, one reject row per unusable PDF or article.

An article's text comes from its first attachment that extracts and cleans well, else from its HTML body.
Work is spread over `params.workers` processes; results come back in input order and are sorted, so the
output does not depend on the worker count.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from bmw.clean.clean import ALL_RULES, CleanResult, clean_text, rejection
from bmw.clean.language import detect_language
from bmw.clean.pdf import extract_pdf
from bmw.params import CleanParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    document: dict | None
    rejects: tuple[dict, ...] = ()


def _reject(article: dict, file: str | None, reason: str) -> dict:
    return {"id": article["id"], "file": file, "reason": reason}


def _from_pdf(article: dict, raw_dir: Path, params: CleanParams) -> tuple[CleanResult | None, int, list[dict]]:
    """The first attachment that gives a usable text (result, pages), and a reject row for each one before
    it that did not."""
    rejects = []
    for attachment in article.get("attachments", []):
        file = attachment["file"]
        path = raw_dir / file
        if not path.resolve().is_relative_to(raw_dir.resolve()):
            rejects.append(_reject(article, file, "unreadable file: outside the crawl folder"))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            rejects.append(_reject(article, file, f"unreadable file: {e.strerror}"))
            continue
        extraction = extract_pdf(data, params.extraction)
        if extraction.reason:
            rejects.append(_reject(article, file, extraction.reason))
            continue
        result = clean_text(extraction.text, article["title"])
        reason = rejection(result, params)
        if reason:
            rejects.append(_reject(article, file, reason))
            continue
        return result, len(extraction.pages), rejects
    return None, 0, rejects


def clean_article(article: dict, raw_dir: Path, params: CleanParams) -> Outcome:
    """The document for one `articles.jsonl` record (None when the article is dropped) and its reject rows."""
    result, pages, rejects = _from_pdf(article, raw_dir, params)
    source = "pdf"
    if result is None:
        source, result = "html", clean_text(article.get("body", ""), article["title"])
        reason = rejection(result, params)
        if reason:
            return Outcome(None, (*rejects, _reject(article, None, f"html body {reason}")))
    language = detect_language(result.text)
    if language not in params.languages:
        return Outcome(None, (*rejects, _reject(article, None, f"language {language}")))
    document = {
        "id": article["id"], "path": article["path"], "title": article["title"], "date": article["date"],
        "language": language, "source": source, "text": result.text,
        "stats": {**result.stats.as_dict(), "pages": pages},
    }
    return Outcome(document, tuple(rejects))


def _outcomes(articles: list[dict], raw_dir: Path, params: CleanParams) -> Iterator[Outcome]:
    work = partial(clean_article, raw_dir=raw_dir, params=params)
    if params.workers == 1 or len(articles) < 2:
        yield from map(work, articles)
        return
    with Pool(min(params.workers, len(articles))) as pool:
        yield from pool.imap(work, articles, chunksize=4)  # imap keeps the input order


def build_documents(articles: list[dict], raw_dir: Path, params: CleanParams,
                    progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Documents sorted by id and reject rows sorted by (id, file)."""
    documents, rejects = [], []
    outcomes: Iterable[Outcome] = _outcomes(articles, raw_dir, params)
    for outcome in tqdm(outcomes, total=len(articles), desc="clean", unit="article", disable=not progress):
        if outcome.document is not None:
            documents.append(outcome.document)
        rejects.extend(outcome.rejects)
    documents.sort(key=lambda d: d["id"])
    rejects.sort(key=lambda r: (r["id"], r["file"] or ""))
    log.info("%d articles -> %d documents, %d reject rows", len(articles), len(documents), len(rejects))
    return documents, rejects


def summarize(articles: list[dict], documents: list[dict], rejects: list[dict]) -> dict:
    """The stage's metrics: counts, characters in and out of the kept documents, rule firing totals."""
    chars_in = sum(d["stats"]["chars_in"] for d in documents)
    chars_out = sum(d["stats"]["chars_out"] for d in documents)
    rules = Counter({name: 0 for name in ALL_RULES})
    for d in documents:
        rules.update(d["stats"]["rules"])
    return {
        "articles": len(articles),
        "documents": len(documents),
        "dropped_articles": len(articles) - len(documents),
        "reject_rows": len(rejects),
        "reject_reasons": dict(sorted(Counter(r["reason"].split(":")[0] for r in rejects).items())),
        "sources": dict(sorted(Counter(d["source"] for d in documents).items())),
        "languages": dict(sorted(Counter(d["language"] for d in documents).items())),
        "pages": sum(d["stats"]["pages"] for d in documents),
        "chars_in": chars_in,
        "chars_out": chars_out,
        "removed_share": round(1 - chars_out / chars_in, 4) if chars_in else 0.0,
        "rules": dict(sorted(rules.items())),
    }
