"""Fault suite, filter: an OpenAI-compatible endpoint on 127.0.0.1 that refuses connections, fails with 5xx and
429, answers 200 with HTML, broken or foreign JSON, drips its body a byte at a time or cuts it off, and rewrites
text unfaithfully; too many fallbacks; kill -9 at random moments of the stage; secrets in the environment.
Counts go to tests/faults.py.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bmw.filter.filter import FallbackShareError, filter_documents
from bmw.io import write_jsonl
from tests.faults import SECRETS, files_with_secrets, snapshot, watch, whole_or_absent
from tests.llm_server import LLMServer
from tests.test_filter import HEADER, KEY, KEY_ENV, doc, params, prose

ROOT = Path(__file__).resolve().parents[1]
AREA = "filter"
OUTPUTS = ["data/filtered", "metrics/filter.json"]


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)

# marker: (behaviours of its requests, expected filter status, expected reason or None)
ENDPOINT = {
    "BURST": (["500", "500"], "kept", None),
    "STORM": (["429", "429"], "kept", None),
    "DOWN": (["500"] * 3, "fallback", "endpoint: HTTP 500 (max_retries 2)"),
    "HTML": (["html"], "kept", None),
    "HTMLS": (["html"] * 3, "fallback", "endpoint: answered with a body that is not JSON (str) (3 attempts)"),
    "BROKEN": (["invalid_json"] * 3, "fallback", "endpoint: answered with a body that is not JSON (3 attempts)"),
    "FOREIGN": (["wrong_schema"] * 3, "fallback", "endpoint: answered with JSON that is no chat completion (3 attempts)"),
    "NOCHOICE": (["bad_choices"], "kept", None),
    "DRIP": (["drip"], "kept", None),
    "DRIPS": (["drip"] * 3, "fallback", "endpoint: timeout (max_retries 2)"),
    "CUT": (["cut"], "kept", None),
    "SLOW": (["timeout"], "kept", None),
    "REORDER": (["reorder"], "fallback", "unfaithful: repeats or reorders text"),
    "ADDWORD": (["add_word"], "fallback", "unfaithful: adds or changes text"),
    "ACROSS": (["drop_across_line"], "fallback", "unfaithful: drops words inside a sentence"),
    "ADDSENT": (["add_sentence"], "fallback", "unfaithful: adds or changes text"),
}


def test_every_endpoint_fault_keeps_the_text_or_the_model_answer(key, tmp_path, ledger):
    with LLMServer(timeout_sleep=1.5, drip_s=0.05) as server:  # a dripped answer takes some 20 s
        for marker, (behaviours, _, _) in ENDPOINT.items():
            server.script(marker, behaviours)
        docs = [doc(f"T{i:07d}EN", [HEADER, f"{marker} " + prose(marker, 3)]) for i, marker in enumerate(ENDPOINT)]
        started = time.monotonic()
        run = filter_documents(docs, params(server, tmp_path, timeout_s=1.0))
        elapsed = time.monotonic() - started
    out = {d["id"]: d for d in run.documents}
    for d, (marker, (_, status, reason)) in zip(docs, ENDPOINT.items()):
        got = out.get(d["id"])
        ok = got is not None and got["filter"]["status"] == status
        if status == "kept":
            ok = ok and got["text"] == d["text"].split("\n\n")[1]  # the model's answer: header gone, prose whole
        else:
            ok = ok and got["text"] == d["text"] and got["filter"]["reason"].startswith(f"chunk 1/1 fallback: {reason}")
        ledger.check(AREA, f"endpoint {marker.lower()}: {' '.join(ENDPOINT[marker][0][:1])} x{len(ENDPOINT[marker][0])}",
                     ok, lost=int(got is None), detail=got and got["filter"])
    ledger.check(AREA, "slow-drip bodies end at the request deadline", elapsed < 20, detail=elapsed)


def test_refused_connections_fall_back_then_fail_the_stage(key, tmp_path, ledger):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with LLMServer() as server:
        p = params(server, tmp_path, max_retries=0).model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1"})
    docs = [doc(f"T{i:07d}EN", [prose(f"d{i}", 3)]) for i in range(4)]
    run = filter_documents(docs, p)
    ledger.check(AREA, "connection refused (fallbacks allowed)", [d["filter"]["reason"] for d in run.documents] == [
        "chunk 1/1 fallback: endpoint: connection error (max_retries 0)"] * 4 and [d["text"] for d in run.documents] ==
        [d["text"] for d in docs])
    with pytest.raises(FallbackShareError) as err:
        filter_documents(docs, p.model_copy(update={"max_fallback_share": 0.25}))
    ledger.check(AREA, "connection refused: more fallbacks than filter.max_fallback_share", str(err.value).startswith(
        "filter.max_fallback_share: 4 of 4 chunks (100%) fell back to their unfiltered text (endpoint 4, malformed 0, "
        "unfaithful 0), more than 25%"), detail=err.value)


def _project(root: Path, server: LLMServer, docs: list[dict]) -> Path:
    write_jsonl(root / "data" / "clean" / "documents.jsonl", docs)
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["filter"].update(enabled=True, base_url=server.base_url, model="test-model", api_key_env="OPENAI_API_KEY",
                          chunk_chars=500, concurrency=2, timeout_s=2, max_retries=1)
    data["base"]["name"] = "tiny"  # the format stage counts tokens with the base's tokenizer
    (root / "params.yaml").write_text(yaml.safe_dump(data))
    return root


def _stage(cwd: Path, module: str = "stages.filter") -> subprocess.Popen:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", module], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


DOCS = [doc(f"T{i:07d}EN", [HEADER, prose(f"k{i}", 3), prose(f"m{i}", 4)]) for i in range(12)]


@pytest.mark.slow
def test_too_many_fallbacks_fail_the_stage_naming_the_key_and_write_nothing(tmp_path, ledger):
    with LLMServer() as server:
        for i in range(12):
            server.script(f"k{i} ", ["500"] * 2)  # every first chunk fails: 12 of 24 chunks fall back
        proc = _stage(_project(tmp_path, server, DOCS))
        _, err = proc.communicate(timeout=120)
    message = err.decode()
    ledger.check(AREA, "endpoint failing half the chunks: the stage fails", proc.returncode == 1 and
                 "filter.max_fallback_share: 12 of 24 chunks (50%) fell back" in message
                 and not (tmp_path / "data" / "filtered").exists() and not (tmp_path / "metrics").exists(),
                 detail=message[-2000:])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("filter")
    with LLMServer() as server:
        proc = _stage(_project(root, server, DOCS))
        assert proc.wait(120) == 0, proc.stderr.read().decode()[-3000:]
    return snapshot(root, OUTPUTS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_moment_then_rerun_equals_an_uninterrupted_run(reference, tmp_path, seed, ledger):
    moment = random.Random(seed).uniform(0.3, 3.5)  # imports take some 1.5 s, the 24 answers 1.2 s more
    with LLMServer(delay_s=0.1) as server:
        root = _project(tmp_path, server, DOCS)
        proc = _stage(root)
        seen_bad = watch(root, OUTPUTS, reference, moment)
        finished = proc.poll() is not None
        proc.kill()
        proc.wait()
        after_kill = whole_or_absent(root, OUTPUTS, reference)
        cached = len(list((root / ".cache").rglob("*.json")))
        rerun = _stage(root)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()[-3000:]
    leaks = files_with_secrets(root)
    ledger.check(AREA, f"kill -9 after {moment:.2f} s (seed {seed}, {cached} answers cached)",
                 not seen_bad and not after_kill and not leaks, lost=int(snapshot(root, OUTPUTS) != reference),
                 detail=(finished, seen_bad, after_kill, leaks))


@pytest.mark.slow
def test_secrets_in_the_environment_reach_no_output(tmp_path, ledger):
    """The filter (its key is OPENAI_API_KEY, sent to the endpoint), base and format run with secrets in their
    environment; the endpoint also echoes the key in a 401 body. No file they leave holds a secret."""
    with LLMServer() as server:
        root = _project(tmp_path, server, [doc(f"T{i:07d}EN", [prose(f"s{i}", 3)]) for i in range(40)])  # 3 splits
        proc = _stage(root)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]
        (root / "data" / "raw").mkdir(parents=True)
        base = _stage(root, "stages.base")
        _, base_err = base.communicate(timeout=300)
        assert base.returncode == 0, base_err.decode()[-3000:]
        fmt = _stage(root, "stages.format")
        fmt_out, fmt_err = fmt.communicate(timeout=300)
        assert fmt.returncode == 0, fmt_err.decode()[-3000:]
        assert set(server.auth_headers) == {f"Bearer {SECRETS['OPENAI_API_KEY']}"}  # the key was really used
        server.script("s0 ", ["401"])
        (root / ".cache").rename(root / "cache.old")  # ask again: the endpoint refuses, echoing the key
        refused = _stage(root)
        _, refused_err = refused.communicate(timeout=120)
    logs = [out, err, fmt_out, fmt_err, refused_err]
    needles = [v.encode() for v in SECRETS.values()]
    leaks = files_with_secrets(root) + [f"log {i}" for i, log in enumerate(logs) if any(n in log for n in needles)]
    ledger.check(AREA, "secrets in the environment of filter and format", refused.returncode != 0 and b"HTTP 401" in
                 refused_err and not leaks and (root / "data" / "processed" / "train.jsonl").exists(), detail=leaks)
