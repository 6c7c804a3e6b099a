"""End to end: `dvc repro` in a fresh clone of the committed tree reproduces the committed dvc.lock.

The data stages (scrape -> format) and the tiny base must match byte for byte; the whole pipeline must
run through `report`, and a second `dvc repro` must run nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BYTE_IDENTICAL = ["scrape", "clean", "filter", "format", "base"]

# The whole pipeline on 2 cores takes ~10 minutes (more on a loaded machine): beyond the suite's default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _outs(lock: dict, stage: str) -> dict[str, str]:
    return {o["path"]: o["md5"] for o in lock["stages"][stage].get("outs", [])}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of HEAD with the whole pipeline run once."""
    committed = subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True).stdout
    if not committed.strip():
        pytest.fail("dvc.lock is not committed: run `dvc repro` and commit the lock")
    path = tmp_path_factory.mktemp("clone") / "repo"
    _run(["git", "clone", "-q", str(ROOT), str(path)], ROOT)
    _run(["dvc", "repro"], path)
    return path


def test_fresh_clone_reproduces_committed_lock(clone):
    committed = yaml.safe_load(subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=ROOT, capture_output=True,
                                              text=True, check=True).stdout)
    produced = yaml.safe_load((clone / "dvc.lock").read_text())
    for stage in BYTE_IDENTICAL:
        assert _outs(produced, stage) == _outs(committed, stage), f"stage {stage} is not byte-identical"
    assert set(produced["stages"]) == set(committed["stages"])


def test_second_repro_runs_nothing(clone):
    before = (clone / "dvc.lock").read_bytes()
    out = _run(["dvc", "repro"], clone)
    assert "Running stage" not in out, out
    assert (clone / "dvc.lock").read_bytes() == before
    assert "up to date" in _run(["dvc", "status"], clone)


def test_pipeline_reaches_the_report(clone):
    report = (clone / "reports" / "report.md").read_text()
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for variant in params["variants"]:
        assert f"| {variant} |" in report
    assert (clone / "reports" / "MODEL_CARD.md").exists()
    assert (clone / "plots" / "report" / "loss_curves.png").stat().st_size > 0
    table = _run([sys.executable, "-m", "bmw.report.table"], clone)
    assert "Test perplexity" in table
