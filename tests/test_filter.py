"""The LLM filter against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

from bmw.filter.answer import MalformedAnswer, parse_answer
from bmw.filter.chunks import Chunk, join_chunks, split_text
from bmw.filter.client import EndpointConfigError, MissingApiKeyError
from bmw.filter.faithful import check_faithful
from bmw.filter.filter import ChunkResult, combine_document, filter_documents
from bmw.io import dumps_line, read_jsonl, write_jsonl
from bmw.params import FilterParams
from tests.llm_server import ADDED_SENTENCE, LLMServer

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "BMW_TEST_LLM_KEY"
KEY = "sk-test-6f1e2d-DO-NOT-LEAK"
HEADER = "Media Information\nDate 3 March 2026\nPage 2"
CONTACT = ("For further information please contact:\nAnna Weber\nTelephone: +49 89 382-12345\n"
           "E-mail: anna.weber@bmwgroup.com\nInternet: www.press.bmwgroup.com")


def prose(tag: str, n: int) -> str:
    """A paragraph of `n` distinct sentences, about 100 characters each."""
    return " ".join(f"The {tag} release sentence {i} describes the drivetrain, the battery and the plant in Munich."
                    for i in range(n))


def doc(doc_id: str, paragraphs: list[str]) -> dict:
    text = "\n\n".join(paragraphs)
    return {"id": doc_id, "path": f"/global/article/detail/{doc_id}/x", "title": doc_id, "date": "2026-03-03",
            "language": "en", "source": "pdf", "text": text,
            "stats": {"chars_in": len(text), "chars_out": len(text), "removed_share": 0.0, "rules": {}, "pages": 1}}


def params(server: LLMServer, tmp_path: Path, **overrides) -> FilterParams:
    """Fallbacks are what most tests here provoke: none of them is too many (but see test_too_many_fallbacks...)."""
    values = dict(enabled=True, base_url=server.base_url, model="test-model", api_key_env=KEY_ENV, chunk_chars=500,
                  concurrency=4, max_retries=2, timeout_s=2.0, cache_dir=str(tmp_path / "cache"), max_fallback_share=1.0)
    return FilterParams(**{**values, **overrides})


@pytest.fixture
def server():
    with LLMServer() as s:
        yield s


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


# --- pure parts ---------------------------------------------------------------------------------------------

def test_split_text_is_lossless_and_prefers_paragraphs_then_sentences():
    huge = prose("huge", 20)  # ~2000 characters: must be cut at sentence ends
    token = "x" * 1200  # one token longer than a chunk: cut hard, still lossless
    text = "\n\n".join([prose("a", 2), prose("b", 2), huge, prose("c", 1), token])
    chunks = split_text(text, 500)
    assert join_chunks(chunks) == text
    assert all(0 < len(c.text) <= 500 for c in chunks)
    assert chunks[0].text == prose("a", 2) + "\n\n" + prose("b", 2)  # paragraphs packed while they fit
    assert chunks[1].sep == "\n\n" and chunks[1].text.startswith("The huge")
    huge_chunks = [c for c in chunks if "huge" in c.text]
    assert len(huge_chunks) >= 4
    assert all(c.text.endswith(".") for c in huge_chunks)  # cut at sentence ends, not mid-sentence
    assert [c.sep for c in huge_chunks[1:]] == [" "] * (len(huge_chunks) - 1)
    assert [c.text for c in chunks[-3:]] == ["x" * 500, "x" * 500, "x" * 200]
    assert split_text(" \n ", 500) == [] and join_chunks([]) == ""
    with pytest.raises(ValueError, match="max_chars"):
        split_text(text, 0)


def test_faithfulness_check():
    m5 = "The new BMW M5 arrives in May with a plug-in hybrid drivetrain."
    hp = "It has 727 hp and a top speed of 305 km/h."
    src = f"Media Information\nPage 2\n\n{m5}  {hp}\n\nTelephone: +49 89 382-1"
    assert check_faithful(src, f"{m5}\n{hp}", 0.5) is None  # deletions and whitespace changes only
    assert check_faithful(src, f"{m5} {hp} It is fast.", 0.5) == "unfaithful: adds or changes text: 'It is fast.'"
    assert "adds or changes" in check_faithful(src, f"{m5.replace('May', 'June')} {hp}", 0.5)
    assert "repeats or reorders" in check_faithful(src, f"{hp} {m5}", 0.5)
    assert "repeats or reorders" in check_faithful(src, f"{m5} {m5} {hp}", 0.5)
    assert check_faithful(src, hp, 0.5) == "unfaithful: keeps 27% of the text, below filter.min_keep_ratio 50%"
    assert check_faithful(src, hp, 0.25) is None


@pytest.mark.parametrize("answer, reason", [
    ("The car is not\nfast. It is red.", None),  # a sentence wrapped anew
    ("It is red.", None),  # a whole sentence deleted
    ("The car is\nfast. It is red.", "drops words inside a sentence: 'The car is fast.'"),  # hidden at a line break
    ("The car is not fast.\n\nred.", "drops words inside a sentence: 'red.'"),
    ("The car is not fast. It is red", "adds or changes text: 'It is red'"),  # "red" is not "red."
    ("The car is not fast. It is reddish.", "adds or changes text: 'It is reddish.'"),  # no word inside a word
    ("It is red. The car is not fast.", "repeats or reorders text: 'The car is not fast.'"),
])
def test_faithfulness_compares_word_sequences_not_lines(answer, reason):
    source = "Page 2\nThe car is not\nfast. It is red."
    assert check_faithful(source, answer, 0.1) == (reason and f"unfaithful: {reason}")


def test_parse_answer_is_defensive():
    body = '{"decision": "keep", "text": "Hello {world}.", "reason": "ok"}'
    assert parse_answer(body).text == "Hello {world}."
    fenced = parse_answer(f"Sure, here it is {{as asked}}:\n```json\n{body}\n```\nDone.")
    assert (fenced.decision, fenced.text, fenced.reason) == ("keep", "Hello {world}.", "ok")
    assert parse_answer('{"decision": " REJECT ", "reason": null}').decision == "reject"
    for bad, message in [("", "empty answer"), ('Sure! {"decision": "keep", "text": ', "no JSON object"),
                         ('{"decision": "maybe", "text": "x"}', "'maybe' is not 'keep' or 'reject'"),
                         ('{"decision": "keep", "text": ""}', "'keep' without a text"),
                         ('{"decision": "keep", "text": ["x"]}', "must be strings")]:
        with pytest.raises(MalformedAnswer, match=message):
            parse_answer(bad)


def test_document_is_rejected_only_when_every_chunk_is():
    d = doc("T0000001EN", ["one", "two"])
    chunks = [Chunk("", "one"), Chunk("\n\n", "two")]
    out, rows = combine_document(d, chunks, [ChunkResult("rejected", "one", "ads")] * 2)
    assert out is None and [(r["chunk"], r["scope"], r["text"]) for r in rows] == [(1, "document", "one"),
                                                                                      (2, "document", "two")]
    out, rows = combine_document(d, chunks, [ChunkResult("rejected", "one", "ads"), ChunkResult("kept", "2", None)])
    assert out["text"] == "2" and out["filter"] == {"status": "kept", "reason": "chunk 1/2 rejected: ads"}
    assert rows == [{"id": "T0000001EN", "chunk": 1, "chunks": 2, "scope": "chunk", "reason": "ads", "text": "one"}]


# --- against the server -------------------------------------------------------------------------------------

def test_off_mode_passes_documents_through_without_a_client(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    docs = [doc("T0000002EN", [prose("b", 2)]), doc("T0000001EN", [HEADER, prose("a", 2)])]
    off = FilterParams(api_key_env=KEY_ENV, base_url="http://127.0.0.1:9/v1", cache_dir=str(tmp_path / "cache"))
    run = filter_documents(docs, off)
    assert run.documents == [{**d, "filter": {"status": "not_filtered", "reason": None}} for d in docs[::-1]]
    assert run.rejected == []
    assert run.summary["filtered"] is False and run.summary["model"] is None
    assert (run.summary["not_filtered"], run.summary["documents_out"], run.metrics["removed_share"]) == (2, 2, 0.0)
    assert not (tmp_path / "cache").exists()


def test_on_mode_chunks_long_documents_and_loses_no_text(server, key, tmp_path):
    paragraphs = [prose("p1", 3), HEADER, prose("p2", 3), prose("huge", 15), prose("p3", 2), CONTACT, prose("p4", 3)]
    docs = [doc("T0000001EN", paragraphs),
            doc("T0000002EN", [HEADER, CONTACT]),  # boilerplate only: the model rejects it
            doc("T0000003EN", [prose("p5", 3), "DROP-ME " + prose("p6", 3), prose("p7", 3)])]
    server.script("DROP-ME", ["reject"])
    p = params(server, tmp_path)
    run = filter_documents(docs, p)

    chunks = split_text(docs[0]["text"], p.chunk_chars)
    assert len(chunks) >= 6 and all(len(c.text) <= 500 for c in chunks)
    assert server.requests == len({c.text for d in docs for c in split_text(d["text"], p.chunk_chars)})
    assert all(b["response_format"] == {"type": "json_object"} and b["model"] == "test-model" for b in server.bodies)

    by_id = {d["id"]: d for d in run.documents}
    long = by_id["T0000001EN"]
    # Every prose paragraph survives whole and in order (the huge one across several chunks); boilerplate is gone.
    assert long["text"] == "\n\n".join(p for p in paragraphs if p not in (HEADER, CONTACT))
    assert long["filter"] == {"status": "kept", "reason": None}
    assert long["stats"] == docs[0]["stats"] and long["title"] == "T0000001EN"

    assert "T0000002EN" not in by_id
    dropped = {(r["id"], r["scope"]): r for r in run.rejected}
    assert dropped["T0000002EN", "document"]["reason"] == "no prose: boilerplate only"
    assert dropped["T0000002EN", "document"]["text"] == f"{HEADER}\n\n{CONTACT}"

    partial = by_id["T0000003EN"]
    assert dropped["T0000003EN", "chunk"]["reason"] == "scripted reject"
    assert partial["filter"]["status"] == "kept" and "rejected: scripted reject" in partial["filter"]["reason"]
    for para in docs[2]["text"].split("\n\n"):  # each paragraph is in the output or dropped with a reason
        assert (para in partial["text"]) != any(para in r["text"] for r in run.rejected if r["id"] == "T0000003EN")

    s = run.summary
    assert (s["filtered"], s["model"], s["prompt_version"]) == (True, "test-model", 1)
    assert (s["documents_in"], s["documents_out"], s["kept"], s["rejected"], s["fallback"]) == (3, 2, 2, 1, 0)
    assert s["chunks_rejected"] == len(run.rejected) and s["chunks"] == s["chunks_kept"] + s["chunks_rejected"]
    assert 0 < s["removed_share"] < 1


def test_transient_failures_are_retried(server, key, tmp_path):
    scripts = {"RATE": ["429", "429"], "CRASH": ["500", "500"], "SLOW": ["timeout"], "GARBLE": ["malformed"],
               "FENCE": ["fenced"]}
    for marker, behaviours in scripts.items():
        server.script(marker, behaviours)
    docs = [doc(f"T00000{i:02d}EN", [f"{marker} " + prose(marker, 3)]) for i, marker in enumerate(scripts)]
    run = filter_documents(docs, params(server, tmp_path, timeout_s=0.5, max_retries=2))
    assert [d["filter"] for d in run.documents] == [{"status": "kept", "reason": None}] * len(docs)
    assert [d["text"] for d in run.documents] == [d["text"] for d in docs]
    assert server.requests == sum(len(b) + 1 for b in scripts.values()) - 1  # the fenced answer is used at once


def test_exhausted_failures_fall_back_and_are_not_cached(server, key, tmp_path):
    p = params(server, tmp_path, timeout_s=0.5, max_retries=1)
    scripts = {"CRASH": ["500"] * 2, "SLOW": ["timeout"] * 2, "GARBLE": ["malformed"] * 2, "FINE": []}
    for marker, behaviours in scripts.items():
        server.script(marker, behaviours)
    docs = [doc(f"T00000{i:02d}EN", [HEADER, f"{marker} " + prose(marker, 3)]) for i, marker in enumerate(scripts)]
    run = filter_documents(docs, p)
    assert [d["filter"] for d in run.documents] == [
        {"status": "fallback", "reason": "chunk 1/1 fallback: endpoint: HTTP 500 (max_retries 1)"},
        {"status": "fallback", "reason": "chunk 1/1 fallback: endpoint: timeout (max_retries 1)"},
        {"status": "fallback", "reason": "chunk 1/1 fallback: malformed: no JSON object with a 'decision' in the "
                                         "answer (2 attempts)"},
        {"status": "kept", "reason": None}]
    # A fallback keeps the (regex-cleaned) input text, boilerplate the model would have removed included.
    assert [d["text"] for d in run.documents[:3]] == [d["text"] for d in docs[:3]]
    assert run.summary["fallback_reasons"] == {"endpoint": 2, "malformed": 1, "unfaithful": 0}
    assert (run.summary["fallback"], run.summary["kept"], run.summary["chunks_fallback"]) == (3, 1, 3)
    assert server.requests == 7

    server.reset_count()
    again = filter_documents(docs, p)  # the endpoint has recovered: only the three failed chunks are asked again
    assert server.requests == 3
    assert [d["filter"]["status"] for d in again.documents] == ["kept"] * 4
    assert [d["text"] for d in again.documents] == [d["text"].split("\n\n")[1] for d in docs]


def test_an_unreachable_endpoint_never_crashes_the_run(key, tmp_path):
    with LLMServer() as gone:
        p = params(gone, tmp_path, max_retries=0)
    docs = [doc("T0000001EN", [prose("a", 3)]), doc("T0000002EN", [prose("b", 3)])]
    run = filter_documents(docs, p)
    reason = "chunk 1/1 fallback: endpoint: connection error (max_retries 0)"
    assert [d["filter"] for d in run.documents] == [{"status": "fallback", "reason": reason}] * 2
    assert [d["text"] for d in run.documents] == [d["text"] for d in docs]


def test_unfaithful_answers_are_not_used(server, key, tmp_path):
    server.script("ADD", ["add_sentence"])
    server.script("DROP", ["drop_most"])
    docs = [doc("T0000001EN", [HEADER, "ADD " + prose("a", 3)]), doc("T0000002EN", [HEADER, "DROP " + prose("b", 3)])]
    p = params(server, tmp_path)
    run = filter_documents(docs, p)
    added, dropped = run.documents
    assert added["text"] == docs[0]["text"] and ADDED_SENTENCE not in added["text"]
    assert added["filter"] == {"status": "fallback",
                               "reason": f"chunk 1/1 fallback: unfaithful: adds or changes text: {ADDED_SENTENCE!r}"}
    assert dropped["text"] == docs[1]["text"]
    assert dropped["filter"]["reason"] == ("chunk 1/1 fallback: unfaithful: keeps 30% of the text, below "
                                                  "filter.min_keep_ratio 50%")
    assert run.summary["fallback_reasons"] == {"endpoint": 0, "malformed": 0, "unfaithful": 2}
    # The answers were well-formed, so they are cached; a laxer ratio reuses them without a request.
    server.reset_count()
    lax = filter_documents(docs, params(server, tmp_path, min_keep_ratio=0.05))
    assert server.requests == 0
    assert lax.documents[1]["filter"]["status"] == "kept" and len(lax.documents[1]["text"]) < 100
    assert lax.documents[0]["filter"]["status"] == "fallback"


def test_second_run_sends_zero_requests(server, key, tmp_path):
    docs = [doc("T0000001EN", [prose("a", 8), HEADER, prose("b", 8)]), doc("T0000002EN", [prose("a", 8)])]
    p = params(server, tmp_path, concurrency=3)
    first = filter_documents(docs, p)
    distinct = len({c.text for d in docs for c in split_text(d["text"], 500)})
    assert server.requests == distinct < first.summary["chunks"]  # a chunk text shared by two documents: one request
    server.reset_count()
    second = filter_documents(docs, p)
    assert server.requests == 0
    assert [dumps_line(d) for d in second.documents] == [dumps_line(d) for d in first.documents]
    assert second.summary == first.summary
    # The key covers the model and the prompt version: either change asks again.
    filter_documents(docs, params(server, tmp_path, model="other-model"))
    assert server.requests == distinct


def test_api_key_never_leaks(server, key, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    for logger in ("openai", "httpx2", "httpcore2", "bmw"):  # in case one has a level of its own
        caplog.set_level(logging.DEBUG, logger=logger)
    server.script("CRASH", ["500"] * 3)
    server.script("RATE", ["429"])
    server.script("GARBLE", ["malformed"] * 3)
    docs = [doc(f"T00000{i}EN", [f"{m} " + prose(m, 3)]) for i, m in enumerate(["CRASH", "RATE", "GARBLE", "OK"])]
    run = filter_documents(docs, params(server, tmp_path))
    out = tmp_path / "out"
    write_jsonl(out / "documents.jsonl", run.documents)
    write_jsonl(out / "rejected.jsonl", run.rejected)
    (out / "summary.json").write_text(json.dumps(run.summary))

    assert server.auth_headers and set(server.auth_headers) == {f"Bearer {KEY}"}  # the key was really used
    assert any(r.name.startswith("openai") for r in caplog.records)  # the client's debug logs were captured
    assert KEY not in caplog.text
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.parent.parent.name == "cache" for f in files)
    assert not [f for f in files if KEY in f.read_text(encoding="utf-8")]

    # The endpoint refuses the key and echoes it in its error body: a clear error, still without the key.
    server.script("WRONG-KEY", ["401"])
    with pytest.raises(EndpointConfigError) as err:
        filter_documents([doc("T0000009EN", ["WRONG-KEY " + prose("k", 3)])], params(server, tmp_path))
    message = "".join(traceback.format_exception(err.value))
    assert "HTTP 401" in message and KEY_ENV in message and "filter.base_url" in message
    assert KEY not in message and KEY not in caplog.text


@pytest.mark.parametrize("value", [None, ""])
def test_missing_key_names_the_variable(server, monkeypatch, tmp_path, value):
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(MissingApiKeyError, match=f"environment variable {KEY_ENV} \\(filter.api_key_env\\)"):
        filter_documents([doc("T0000001EN", [prose("a", 2)])], params(server, tmp_path))
    assert server.requests == 0


def test_bad_input_and_prompt_version_are_named(server, key, tmp_path):
    with pytest.raises(ValueError, match="filter.prompt_version: no prompt version 9; known versions: 1"):
        filter_documents([doc("T0000001EN", ["x"])], params(server, tmp_path, prompt_version=9))
    with pytest.raises(ValueError, match="document 2: duplicate id 'T0000001EN'"):
        filter_documents([doc("T0000001EN", ["x"])] * 2, params(server, tmp_path))
    with pytest.raises(ValueError, match="document 1: needs a string 'id' and 'text'"):
        filter_documents([{"id": "T0000001EN"}], params(server, tmp_path))
    assert server.requests == 0


@pytest.mark.slow
def test_stage_writes_its_outputs_and_reruns_from_the_cache(server, tmp_path):
    docs = [doc("T0000002EN", [prose("b", 3), CONTACT]), doc("T0000001EN", [HEADER, prose("a", 6)]),
            doc("T0000003EN", [HEADER])]
    write_jsonl(tmp_path / "data/clean/documents.jsonl", docs)
    filter_params = {"enabled": True, "base_url": server.base_url, "model": "test-model", "api_key_env": KEY_ENV,
                     "chunk_chars": 500, "timeout_s": 2, "cache_dir": ".cache/llm_filter"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"filter": filter_params}))
    env = {**os.environ, KEY_ENV: KEY, "PYTHONPATH": str(ROOT)}

    def stage() -> dict[str, bytes]:
        proc = subprocess.run([sys.executable, "-m", "stages.filter"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert KEY not in proc.stdout + proc.stderr
        names = ["data/filtered/documents.jsonl", "data/filtered/rejected.jsonl", "data/filtered/summary.json",
                 "metrics/filter.json"]
        return {n: (tmp_path / n).read_bytes() for n in names}

    first = stage()
    assert server.requests == 4  # T0000001EN: header, two halves of a; T0000002EN: one; T0000003EN: header again
    documents = read_jsonl(tmp_path / "data/filtered/documents.jsonl")
    assert [d["id"] for d in documents] == ["T0000001EN", "T0000002EN"]
    assert [d["text"] for d in documents] == [prose("a", 6), prose("b", 3)]
    assert [(r["id"], r["scope"]) for r in read_jsonl(tmp_path / "data/filtered/rejected.jsonl")] == [
        ("T0000001EN", "chunk"), ("T0000003EN", "document")]  # the header is a chunk of its own
    metrics = json.loads(first["metrics/filter.json"])
    assert (metrics["documents_in"], metrics["kept"], metrics["rejected"]) == (3, 2, 1)
    server.reset_count()
    assert stage() == first and server.requests == 0
