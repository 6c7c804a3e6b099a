"""End to end: `dvc repro` in a fresh clone of the committed tree reproduces the committed dvc.lock.

The data stages (scrape -> format) and the embedded SmolLM2 base must match byte for byte; the whole pipeline must
run through `report` (on the tiny model: tests/conftest.py), and a second `dvc repro` must run nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_in

BYTE_IDENTICAL = ["scrape", "clean", "filter", "format", "base"]

# The session's pipeline run (tests/conftest.py, ~10 minutes on 2 cores, more on a loaded machine) happens in
# whichever slow test comes first: beyond the suite's default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _outs(lock: dict, stage: str) -> dict[str, str]:
    return {o["path"]: o["md5"] for o in lock["stages"][stage].get("outs", [])}


def test_fresh_clone_reproduces_committed_lock(pipeline_clone):
    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True,
                                              text=True, check=True).stdout)
    produced = yaml.safe_load((pipeline_clone.parent / "real.lock").read_text())  # the embedded default's run
    for stage in BYTE_IDENTICAL:
        assert _outs(produced, stage) == _outs(committed, stage), f"stage {stage} is not byte-identical"
    everything = yaml.safe_load((pipeline_clone / "dvc.lock").read_text())  # then the tiny run through report
    assert set(everything["stages"]) == set(committed["stages"])


def test_second_repro_runs_nothing(pipeline_clone):
    before = (pipeline_clone / "dvc.lock").read_bytes()
    out = run_in(["dvc", "repro"], pipeline_clone)
    assert "Running stage" not in out, out
    assert (pipeline_clone / "dvc.lock").read_bytes() == before
    assert "up to date" in run_in(["dvc", "status"], pipeline_clone)


def test_pipeline_reaches_the_report(pipeline_clone):
    report = (pipeline_clone / "reports" / "report.md").read_text()
    params = yaml.safe_load((pipeline_clone / "params.yaml").read_text())
    for variant in params["variants"]:
        assert f"| {variant} |" in report
    assert (pipeline_clone / "reports" / "MODEL_CARD.md").exists()
    assert (pipeline_clone / "plots" / "report" / "loss_curves.png").stat().st_size > 0
    table = run_in([sys.executable, "-m", "bmw.report.table"], pipeline_clone)
    assert "Test perplexity" in table


def test_no_output_is_stored_twice(pipeline_clone):
    """Every cached weights file, and every other output over 1 MiB, is the cache's own inode (a hardlink), not a
    copy beside it: .dvc/config's `cache.type = hardlink,copy` makes `dvc repro` link directory outputs as it commits
    them. DVC leaves a file whose bytes are already in the cache as it is: a variant's tokenizer files, the base's
    bytes, are hard links to the base's for that reason (save_variant, tests/test_train.py). A stage that runs again
    and writes the same bytes leaves a copy too: this clone's second repro (base tiny) rewrites the data splits
    unchanged (a few hundred KB), copies until `dvc checkout --relink`."""
    from dvc.repo import Repo

    with Repo(str(pipeline_clone)) as repo:
        paths = [Path(out.fs_path) for out in repo.index.outs if out.use_cache]
    files = [f for path in paths for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file()]
    assert len(files) > 100 and any(f.name == "model.safetensors" for f in files)
    large = [f for f in files if f.suffix == ".safetensors" or f.stat().st_size > 2**20]
    copies = [str(f.relative_to(pipeline_clone)) for f in large if f.stat().st_nlink < 2]
    assert not copies, copies[:10]
