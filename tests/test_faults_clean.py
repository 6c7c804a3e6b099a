"""Fault suite, clean: PDFs that cost too much (pages, time, an inflating stream), cut-off and garbage files,
control characters, hostile file names; and kill -9 at random moments of the stage. Counts go to tests/faults.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from fpdf import FPDF

from bmw.clean.clean import clean_text
from bmw.clean.documents import build_documents, clean_article
from bmw.clean.pdf import Budget, extract_pdf
from bmw.io import read_jsonl, sha256_bytes
from tests.faults import SECRETS, files_with_secrets, snapshot, watch, whole_or_absent
from tests.test_clean import GOOD as GOOD_ARTICLES
from tests.test_clean import ROOMY, build_raw, site_pdf
from tests.test_scrape import _ppid

ROOT = Path(__file__).resolve().parents[1]
AREA = "clean"
OUTPUTS = ["data/clean", "metrics/clean.json"]


def raw_pdf(content: bytes) -> bytes:
    """A one-page PDF whose content stream is `content`, deflated; written by hand, so any stream can be."""
    stream = zlib.compress(content, 9)
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>",
               b"<</Length %d/Filter/FlateDecode>>stream\n" % len(stream) + stream + b"\nendstream",
               b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_pdf(pages: int, lines: int = 1) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for n in range(pages):
        pdf.add_page()
        for i in range(lines):
            pdf.text(20, 20 + 5 * i, f"Page {n}, line {i}: the new plant produces battery cells for the Neue Klasse.")
    return bytes(pdf.output())


BOMB = raw_pdf(b"BT /F1 12 Tf 72 720 Td (Munich.) Tj ET\n" + b" " * (20 << 20))  # 21 kB inflating to 20 MiB


def test_pdfs_over_the_budget_are_rejects_with_a_reason(ledger):
    started = time.monotonic()
    ledger.check(AREA, "pdf with 400 pages", extract_pdf(text_pdf(400)).reason == "over budget: 400 pages > 300")
    ledger.check(AREA, "pdf stream inflating to 20 MiB",
                 extract_pdf(BOMB).reason == "over budget: a stream inflates past 16 MiB")
    slow, budget = text_pdf(60, 40), Budget(seconds=0.05)  # takes some 0.2 s to extract
    ledger.check(AREA, "pdf extraction past its time (main thread: a timer)",
                 extract_pdf(slow, budget=budget).reason == "over budget: extraction took over 0.05 s")
    with ThreadPoolExecutor(1) as pool:  # no signal reaches a thread: the deadline is checked between pages
        reason = pool.submit(extract_pdf, slow, "plain", budget).result().reason
    ledger.check(AREA, "pdf extraction past its time (worker thread: between pages)",
                 reason == "over budget: extraction took over 0.05 s")
    assert extract_pdf(slow).reason is None and time.monotonic() - started < 10


def test_cut_off_garbage_and_control_characters(ledger):
    good = site_pdf(GOOD_ARTICLES[0].id)
    reasons = []
    for seed in range(8):  # cut anywhere: a reason or a text, never an exception
        cut = random.Random(seed).randrange(16, len(good))
        extraction = extract_pdf(good[:cut])
        reasons.append(extraction.reason)
        ledger.check(AREA, f"pdf cut at byte {cut} of {len(good)}",
                     (extraction.reason or "").startswith("corrupt pdf") or extraction.text.strip(), detail=reasons)
    for name, data in [("empty file", b""), ("header only", b"%PDF-1.7\n"), ("random bytes", random.Random(1).randbytes(5000)),
                       ("pdf header then random bytes", b"%PDF-1.4\n" + random.Random(2).randbytes(5000))]:
        reason = extract_pdf(data).reason or ""
        ledger.check(AREA, name, reason.startswith(("corrupt pdf", "not a pdf")), detail=reason)
    text = extract_pdf(raw_pdf(b"BT /F1 12 Tf 72 720 Td (Munich.\\000 The plant\\007 opens.) Tj ET\n")).text
    ledger.check(AREA, "NUL and control characters in the text layer", "\x00" in text and clean_text(
        text).text == "Munich. The plant opens.")


def test_hostile_file_names_and_article_records(tmp_path, ledger):
    raw = tmp_path / "raw"
    (raw / "pdfs").mkdir(parents=True)
    secret = tmp_path / "secret.pdf"
    secret.write_bytes(site_pdf(GOOD_ARTICLES[0].id))
    body = "Munich.\x00 The new plant opens in spring and employs 1,500 people in the region. " * 4
    article = {"id": "T0000001EN", "path": "/x", "title": "Plant", "date": "2026-01-01", "language": "en",
               "body": body, "attachments": [{"file": "../secret.pdf"}, {"file": str(secret)}]}
    outcome = clean_article(article, raw, ROOMY)
    ledger.check(AREA, "attachment paths leading out of the crawl folder", [r["reason"] for r in outcome.rejects] == [
        "unreadable file: outside the crawl folder"] * 2 and outcome.document["source"] == "html",
        detail=outcome.rejects)
    ledger.check(AREA, "NUL in an HTML body", "\x00" not in outcome.document["text"])


def _stage(cwd: Path) -> subprocess.Popen:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "stages.clean"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """data/raw from the mirror, with a bomb, a 400-page file and a cut-off file among the attachments; the
    stage run once uninterrupted: (project, its outputs)."""
    root = tmp_path_factory.mktemp("clean")
    (root / "data" / "raw").mkdir(parents=True)
    articles = build_raw(root / "data" / "raw")
    hostile = {"T0418010EN": BOMB, "T0417877EN": text_pdf(400), "T0417662EN": site_pdf("T0417662EN")[:3000]}
    for article in articles:
        if article["id"] in hostile:
            data = hostile[article["id"]]
            (root / "data" / "raw" / article["attachments"][0]["file"]).write_bytes(data)
            article["attachments"][0].update(sha256=sha256_bytes(data), bytes=len(data))
    (root / "data" / "raw" / "articles.jsonl").write_text("".join(
        json.dumps(a, ensure_ascii=False, sort_keys=True) + "\n" for a in articles), encoding="utf-8")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _stage(root)
    assert proc.wait(120) == 0, proc.stderr.read().decode()[-3000:]
    rejects = {r["id"]: r["reason"] for r in read_jsonl(root / "data" / "clean" / "rejects.jsonl")}
    assert rejects["T0418010EN"].startswith("over budget") and rejects["T0417877EN"].startswith("over budget")
    assert rejects["T0417662EN"].startswith("corrupt pdf")
    reference = snapshot(root, OUTPUTS)
    shutil.rmtree(root / "data" / "clean")
    (root / "metrics" / "clean.json").unlink()
    return root, reference


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_moment_then_rerun_equals_an_uninterrupted_run(project, tmp_path, seed, ledger):
    root, reference = project
    work = tmp_path / "p"
    shutil.copytree(root, work)
    moment = random.Random(seed).uniform(0.8, 2.6)  # the stage takes some 2 s, its imports 1 s
    proc = _stage(work)
    children = _children(proc.pid)
    seen_bad = watch(work, OUTPUTS, reference, moment)  # outputs looked at again and again until the kill
    children = children or _children(proc.pid)
    finished = proc.poll() is not None
    proc.kill()
    proc.wait()
    for pid in children:  # the stage's worker processes, started by this test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    after_kill = whole_or_absent(work, OUTPUTS, reference)
    rerun = _stage(work)
    assert rerun.wait(120) == 0, rerun.stderr.read().decode()[-3000:]
    leftovers = [p.name for p in (work / "data").iterdir() if p.name.startswith(".")]
    leaks = files_with_secrets(work)
    ledger.check(AREA, f"kill -9 after {moment:.2f} s (seed {seed})",
                 not seen_bad and not after_kill and not leftovers and not leaks,
                 lost=int(snapshot(work, OUTPUTS) != reference), detail=(finished, seen_bad, after_kill, leftovers, leaks))


def _children(pid: int) -> list[int]:
    return [int(stat.parent.name) for stat in Path("/proc").glob("[0-9]*/stat") if _ppid(stat) == pid]


def test_budget_rejects_keep_the_article_through_its_html_body(tmp_path, ledger):
    raw = tmp_path / "raw"
    articles = [a for a in build_raw(raw) if a["id"] in {g.id for g in GOOD_ARTICLES[:3]}]
    bomb = articles[0]
    (raw / bomb["attachments"][0]["file"]).write_bytes(BOMB)
    documents, rejects = build_documents(articles, raw, ROOMY.model_copy(update={"workers": 1}), progress=False)
    sources = {d["id"]: d["source"] for d in documents}
    ledger.check(AREA, "bomb among good pdfs: its article falls back to its html body", sources == {
        a["id"]: "html" if a is bomb else "pdf" for a in articles} and [r["reason"] for r in rejects] == [
        "over budget: a stream inflates past 16 MiB"], detail=(sources, rejects))
