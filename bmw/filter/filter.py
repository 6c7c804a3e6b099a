"""The filter stage's logic: documents in, filtered documents + rejected chunks + counts out.

How chunk verdicts combine into a document (one request per chunk):
- a chunk the model keeps, with a faithful answer, contributes the model's text (boilerplate removed);
- a chunk the model rejects is dropped and recorded in `rejected` with its text and the model's reason;
- a chunk whose answer cannot be used (endpoint failed after every retry, malformed after every retry,
  unfaithful) keeps its input text, which the clean stage already regex-cleaned: status `fallback`;
- a document is rejected only when every chunk is rejected; otherwise it keeps its surviving chunks in order,
  with status `fallback` if any chunk fell back, else `kept`, and a reason naming each dropped/fallen-back chunk.

More fallbacks than `filter.max_fallback_share` of the chunks mean the endpoint, not a few answers, failed: the
run raises FallbackShareError instead of passing the documents on mostly unfiltered (the answers it did get
are cached, so the run after the fix asks only for the rest).
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Literal

import openai
from tqdm import tqdm

from bmw.filter.answer import Answer, MalformedAnswer, parse_answer
from bmw.filter.cache import ResponseCache, cache_key
from bmw.filter.chunks import Chunk, join_chunks, split_text
from bmw.filter.client import (
    CONFIG_ERRORS,
    BadResponse,
    complete,
    config_error,
    describe_error,
    make_client,
)
from bmw.filter.faithful import check_faithful
from bmw.filter.prompts import build_messages
from bmw.params import FilterParams

log = logging.getLogger(__name__)

FallbackKind = Literal["endpoint", "malformed", "unfaithful"]


class FallbackShareError(RuntimeError):
    """Too many chunks fell back to their unfiltered text (filter.max_fallback_share)."""


@dataclass(frozen=True)
class Fetched:
    """One chunk's answer, or why there is none; `calls` is how many requests it took (0: from the cache)."""

    answer: Answer | None
    failure: str | None = None
    kind: FallbackKind | None = None
    calls: int = 0


@dataclass(frozen=True)
class ChunkResult:
    status: Literal["kept", "rejected", "fallback"]
    text: str
    reason: str | None
    kind: FallbackKind | None = None


@dataclass
class FilterRun:
    documents: list[dict]
    rejected: list[dict]
    summary: dict
    metrics: dict


def fetch_answer(chunk: str, client: openai.OpenAI, params: FilterParams, cache: ResponseCache) -> Fetched:
    """The cached answer, or ask: endpoint failures (after the client's retries) give up at once, a malformed
    answer is asked again up to `max_retries` times. Only a well-formed answer is cached."""
    key = cache_key(params.model, params.prompt_version, chunk)
    cached = cache.get(key)
    if cached is not None:
        return Fetched(cached)
    messages = build_messages(chunk, params.prompt_version)
    attempts = params.max_retries + 1
    problem, kind = "", "malformed"
    for attempt in range(1, attempts + 1):
        try:
            answer = parse_answer(complete(client, params.model, messages))
        except CONFIG_ERRORS as e:
            raise config_error(e, params) from None  # the body may echo the key: do not chain it
        except openai.APIError as e:
            failure = f"endpoint: {describe_error(e)} (max_retries {params.max_retries})"
            log.warning("chunk %s: %s", key[:12], failure)
            return Fetched(None, failure, "endpoint", attempt)
        except BadResponse as e:
            problem, kind = f"answered with {e}", "endpoint"
            log.info("chunk %s: the endpoint %s (attempt %d of %d)", key[:12], problem, attempt, attempts)
            continue
        except MalformedAnswer as e:
            problem, kind = str(e), "malformed"
            log.info("chunk %s: malformed answer (attempt %d of %d): %s", key[:12], attempt, attempts, problem)
            continue
        cache.put(key, answer, params.model, params.prompt_version)
        return Fetched(answer, calls=attempt)
    failure = f"{kind}: {problem} ({attempts} attempts)"
    log.warning("chunk %s: %s", key[:12], failure)
    return Fetched(None, failure, kind, attempts)


def judge_chunk(chunk: str, fetched: Fetched, min_keep_ratio: float) -> ChunkResult:
    """Pure: what a chunk contributes, given the model's answer (or the lack of one)."""
    answer = fetched.answer
    if answer is None:
        return ChunkResult("fallback", chunk, fetched.failure, fetched.kind)
    if answer.decision == "reject":
        return ChunkResult("rejected", chunk, answer.reason or "rejected by the model")
    problem = check_faithful(chunk, answer.text, min_keep_ratio)
    if problem:
        return ChunkResult("fallback", chunk, problem, "unfaithful")
    return ChunkResult("kept", answer.text.strip(), None)


def combine_document(doc: dict, chunks: list[Chunk], results: list[ChunkResult]) -> tuple[dict | None, list[dict]]:
    """Pure: the filtered document (None when rejected) and one `rejected` row per dropped chunk."""
    n = len(chunks)
    if n == 0:
        return None, [{"id": doc["id"], "chunk": None, "chunks": 0, "scope": "document",
                       "reason": "empty text", "text": ""}]
    dropped = [i for i, r in enumerate(results) if r.status == "rejected"]
    scope = "document" if len(dropped) == n else "chunk"
    rows = [{"id": doc["id"], "chunk": i + 1, "chunks": n, "scope": scope, "reason": results[i].reason,
             "text": chunks[i].text} for i in dropped]
    if scope == "document":
        return None, rows
    kept = [Chunk(c.sep, r.text) for c, r in zip(chunks, results, strict=True) if r.status != "rejected"]
    notes = [f"chunk {i + 1}/{n} {'rejected' if r.status == 'rejected' else 'fallback'}: {r.reason}"
             for i, r in enumerate(results) if r.status != "kept"]
    status = "fallback" if any(r.status == "fallback" for r in results) else "kept"
    out = {**doc, "text": join_chunks(kept), "filter": {"status": status, "reason": "; ".join(notes) or None}}
    return out, rows


def passthrough(docs: list[dict]) -> FilterRun:
    out = [{**d, "filter": {"status": "not_filtered", "reason": None}} for d in docs]
    return _finish(docs, out, [], [], None)


def _check_documents(docs: list[dict]) -> None:
    seen: set[str] = set()
    for n, doc in enumerate(docs, 1):
        if not isinstance(doc.get("id"), str) or not isinstance(doc.get("text"), str):
            raise ValueError(f"document {n}: needs a string 'id' and 'text' (got keys {sorted(doc)})")
        if doc["id"] in seen:
            raise ValueError(f"document {n}: duplicate id {doc['id']!r}")
        seen.add(doc["id"])


def _fetch_all(texts: list[str], client: openai.OpenAI, params: FilterParams) -> dict[str, Fetched]:
    cache = ResponseCache(params.cache_dir)
    fetched: dict[str, Fetched] = {}
    pool = ThreadPoolExecutor(max_workers=params.concurrency, thread_name_prefix="llm-filter")
    try:
        futures = {pool.submit(fetch_answer, t, client, params, cache): t for t in texts}
        for future in tqdm(as_completed(futures), total=len(futures), desc="filter", unit="chunk"):
            fetched[futures[future]] = future.result()
    finally:
        pool.shutdown(cancel_futures=True)  # a configuration error stops the queued requests too
    return fetched


def filter_documents(docs: list[dict], params: FilterParams, client: openai.OpenAI | None = None) -> FilterRun:
    """Off: every document passes with status `not_filtered` (no client, no key). On: see the module doc."""
    _check_documents(docs)
    if not params.enabled:
        return passthrough(docs)
    build_messages("", params.prompt_version)  # an unknown prompt version fails before any request
    client = client or make_client(params)
    chunked = [split_text(d["text"], params.chunk_chars) for d in docs]
    unique = list(dict.fromkeys(c.text for chunks in chunked for c in chunks))
    fetched = _fetch_all(unique, client, params)
    calls = sum(f.calls for f in fetched.values())
    log.info("%d chunks (%d distinct): %d from the cache, %d calls", sum(map(len, chunked)), len(unique),
             sum(f.calls == 0 for f in fetched.values()), calls)
    documents, rejected, results = [], [], []
    for doc, chunks in zip(docs, chunked, strict=True):
        chunk_results = [judge_chunk(c.text, fetched[c.text], params.min_keep_ratio) for c in chunks]
        out, rows = combine_document(doc, chunks, chunk_results)
        documents += [out] if out else []
        rejected += rows
        results += chunk_results
    run = _finish(docs, documents, rejected, results, params)
    _check_fallback_share(run.summary, params.max_fallback_share)
    return run


def _check_fallback_share(summary: dict, limit: float) -> None:
    fallback, chunks = summary["chunks_fallback"], summary["chunks"]
    if chunks and fallback / chunks > limit:
        kinds = ", ".join(f"{k} {n}" for k, n in summary["fallback_reasons"].items())
        raise FallbackShareError(
            f"filter.max_fallback_share: {fallback} of {chunks} chunks ({fallback / chunks:.0%}) fell back to their "
            f"unfiltered text ({kinds}), more than {limit:.0%}: nothing was written. Check the endpoint "
            "(filter.base_url, filter.model) and run again: the answers received are cached.")


def _finish(inputs: list[dict], documents: list[dict], rejected: list[dict], results: list[ChunkResult],
            params: FilterParams | None) -> FilterRun:
    """Sort the outputs and count them; `params` is None when the filter is off."""
    documents = sorted(documents, key=lambda d: d["id"])
    rejected = sorted(rejected, key=lambda r: (r["id"], r["chunk"] or 0))
    statuses = Counter(d["filter"]["status"] for d in documents)
    chunk_statuses = Counter(r.status for r in results)
    chars_in = sum(len(d["text"]) for d in inputs)
    chars_out = sum(len(d["text"]) for d in documents)
    metrics = {
        "documents_in": len(inputs),
        "documents_out": len(documents),
        "kept": statuses["kept"],
        "fallback": statuses["fallback"],
        "not_filtered": statuses["not_filtered"],
        "rejected": len(inputs) - len(documents),
        "chunks": len(results),
        "chunks_kept": chunk_statuses["kept"],
        "chunks_rejected": chunk_statuses["rejected"],
        "chunks_fallback": chunk_statuses["fallback"],
        "chars_in": chars_in,
        "chars_out": chars_out,
        "removed_share": round(1 - chars_out / chars_in, 6) if chars_in else 0.0,
    }
    kinds = Counter(r.kind for r in results if r.kind)
    summary = {
        "filtered": params is not None,
        "model": params.model if params else None,
        "prompt_version": params.prompt_version if params else None,
        **metrics,
        "fallback_reasons": {k: kinds[k] for k in ("endpoint", "malformed", "unfaithful")},
    }
    return FilterRun(documents, rejected, summary, metrics)
