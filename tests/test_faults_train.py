"""Fault suite, train: kill -9 at random moments of `python -m stages.train` (the metrics appear complete or not
at all; the re-run resumes and equals an uninterrupted run), checkpoints cut off or with missing or stray
shards, base folders whose weights disagree with their config. Counts go to tests/faults.py.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bmw.models.base import load_base
from bmw.models.surgery import apply_plan
from bmw.models.weights import WeightsError
from bmw.params import parse_params
from bmw.train.checkpoints import resume_point
from bmw.train.config import run_config
from bmw.train.data import load_chat_split
from bmw.train.sft import fit
from tests.faults import SECRETS, files_with_secrets
from tests.test_train import PARAMS, PLAN, make_project

ROOT = Path(__file__).resolve().parents[1]
AREA = "train"
pytestmark = pytest.mark.usefixtures("one_thread")


def _stage(project: Path) -> subprocess.Popen:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "stages.train", "lora"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _curve(path: Path) -> list[tuple[int, float]]:
    with path.open(encoding="utf-8") as f:
        return [(int(r["step"]), float(r[next(k for k in r if k not in ("step", "timestamp"))]))
                for r in csv.DictReader(f, delimiter="\t")]


def _outputs(project: Path) -> dict | None:
    """What the stage has published, read as a consumer would (None: nothing yet); raises if it is not whole."""
    metrics_dir, variant = project / "metrics" / "train" / "lora", project / "models" / "variants" / "lora"
    if not metrics_dir.exists():
        return None
    metrics = json.loads((metrics_dir / "metrics.json").read_text())
    assert set(metrics) == {"best_eval_loss"}, metrics  # dvclive's running values never stand here
    run = json.loads((metrics_dir / "run.json").read_text())
    assert json.loads((variant / "variant.json").read_text())["format"] == "lora"
    assert load_file(variant / "adapter_model.safetensors")
    return {"best_eval_loss": metrics["best_eval_loss"], "steps": run["steps"],
            "loss": _curve(metrics_dir / "plots" / "metrics" / "loss.tsv"),
            "eval": _curve(metrics_dir / "plots" / "metrics" / "eval" / "loss.tsv")}


def _same(a: dict, b: dict) -> bool:
    """Equal to an uninterrupted run: the same steps, values within float noise of a resumed run."""
    return (a["steps"] == b["steps"] and [s for s, _ in a["loss"]] == [s for s, _ in b["loss"]]
            and [s for s, _ in a["eval"]] == [s for s, _ in b["eval"]]
            and all(abs(x - y) < 1e-4 for (_, x), (_, y) in zip(a["loss"] + a["eval"], b["loss"] + b["eval"]))
            and abs(a["best_eval_loss"] - b["best_eval_loss"]) < 1e-4)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def reference(project) -> dict:
    work = project.parent / "reference"
    shutil.copytree(project, work)
    proc = _stage(work)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    return _outputs(work)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_at_a_random_moment_then_rerun_equals_an_uninterrupted_run(project, reference, tmp_path, seed, ledger):
    work = tmp_path / "p"
    shutil.copytree(project, work)
    moment = random.Random(seed).uniform(0.8, 2.2)  # after dvclive is up: 12 steps and the saves take some 2 s
    proc = _stage(work)
    started, torn = None, []
    while proc.poll() is None and (started is None or time.monotonic() < started + moment):
        if started is None and (work / "models" / "checkpoints" / "lora" / "live").exists():  # dvclive is up
            started = time.monotonic()
        try:  # what the stage publishes is looked at again and again until the kill
            _outputs(work)
        except FileNotFoundError:
            pass  # a folder swapped in while it was read
        except (AssertionError, ValueError, KeyError, StopIteration) as e:
            torn.append(repr(e)[:200])
        time.sleep(0.01)
    finished = proc.poll() is not None
    proc.kill()
    proc.wait()
    checkpoints = sorted(p.name for p in (work / "models" / "checkpoints" / "lora").glob("checkpoint-*"))
    try:
        visible = _outputs(work)
    except (AssertionError, ValueError, KeyError, FileNotFoundError) as e:
        torn.append(repr(e))
        visible = None
    rerun = _stage(work)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-3000:]
    leaks = files_with_secrets(work)
    ledger.check(AREA, f"kill -9 {moment:.1f} s into training (seed {seed}; checkpoints {checkpoints})",
                 not torn and (visible is None or _same(visible, reference)) and not leaks,
                 lost=int(not _same(_outputs(work), reference)), detail=(finished, sorted(set(torn))[:3], leaks))


# --- cut-off checkpoints ---------------------------------------------------------------------------------------


def _fit(project: Path, ck: Path, epochs: float = 3):
    params = parse_params(PARAMS)
    model, tokenizer = load_base(project / "models" / "base")
    variant = params.variants["full"].model_copy(update={"epochs": epochs})
    return fit(apply_plan(model, PLAN), tokenizer, run_config(params.train, variant, 42, ck, "float32"),
               load_chat_split(project / "data" / "processed" / "train.jsonl"),
               load_chat_split(project / "data" / "processed" / "validation.jsonl"),
               metrics_dir=ck / "live", fingerprint="cut")


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _shard(checkpoint: Path) -> None:
    """model.safetensors split into two shards with an index, as large models are saved."""
    tensors = load_file(checkpoint / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, checkpoint / file)
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: f for f, part in halves.items() for n in part}}))
    (checkpoint / "model.safetensors").unlink()


DAMAGE = {
    "trainer_state.json cut off": lambda c: _cut(c / "trainer_state.json"),
    "trainer_state.json empty": lambda c: (c / "trainer_state.json").write_text(""),
    "weights cut off": lambda c: _cut(c / "model.safetensors", 0.9),
    "weights missing": lambda c: (c / "model.safetensors").unlink(),
    "a shard missing": lambda c: (_shard(c), (c / "model-00002-of-00002.safetensors").unlink()),
    "a shard cut off": lambda c: (_shard(c), _cut(c / "model-00001-of-00002.safetensors", 0.99)),
    "a stray shard beside the index": lambda c: (_shard(c), save_file(
        {"x": torch.zeros(1)}, c / "model-00003-of-00003.safetensors")),
}


@pytest.fixture(scope="module")
def checkpoints(project, tmp_path_factory) -> Path:
    """The checkpoints a whole run (12 steps, one every 2) leaves: the best and the last."""
    ck = tmp_path_factory.mktemp("checkpoints") / "ck"
    _fit(project, ck)
    return ck


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_last_checkpoint_is_not_resumed(checkpoints, tmp_path, damage, ledger):
    ck = tmp_path / "ck"
    shutil.copytree(checkpoints, ck)
    steps = sorted(int(p.name.split("-")[1]) for p in ck.glob("checkpoint-*"))
    DAMAGE[damage](ck / f"checkpoint-{steps[-1]}")
    if damage.startswith("a shard") or damage.startswith("a stray"):
        _shard(ck / f"checkpoint-{steps[0]}")  # the one to resume from is sharded too, and whole
    chosen = resume_point(ck, "cut")
    ledger.check(AREA, f"checkpoint: {damage}", chosen == ck / f"checkpoint-{steps[0]}"
                 and not (ck / f"checkpoint-{steps[-1]}").exists(), detail=(steps, chosen))


def test_the_last_steps_checkpoint_has_no_resume_state_and_resumes_to_the_end(project, checkpoints, tmp_path):
    steps = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    last = checkpoints / f"checkpoint-{steps[-1]}"
    assert steps[-1] == 12 and (last / "model.safetensors").is_file() and (last / "trainer_state.json").is_file()
    assert not [p.name for p in last.iterdir() if p.name.startswith(("optimizer", "scheduler", "rng_state"))]
    ck = tmp_path / "ck"
    shutil.copytree(checkpoints, ck)
    model, figures, _ = _fit(project, ck)  # a kill after the last save: the rerun takes no step, keeps the best
    assert figures["resumed_from_step"] == 12 and figures["steps"] == 12
    best = load_file(ck / f"checkpoint-{figures['best_step']}" / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


@pytest.mark.slow
def test_training_resumes_from_the_last_whole_checkpoint_and_finishes(project, checkpoints, tmp_path, ledger):
    ck = tmp_path / "ck"
    shutil.copytree(checkpoints, ck)
    steps = sorted(int(p.name.split("-")[1]) for p in ck.glob("checkpoint-*"))
    _cut(ck / f"checkpoint-{steps[-1]}" / "trainer_state.json")
    _, figures, _ = _fit(project, ck)
    ledger.check(AREA, "resume after a cut-off trainer_state.json", figures["resumed_from_step"] == steps[0]
                 and figures["steps"] == 12, detail=figures)


def test_a_base_with_a_missing_or_stray_shard_is_refused(project, tmp_path, ledger):
    for case, damage in (("missing", lambda b: (b / "model-00002-of-00002.safetensors").unlink()),
                         ("stray", lambda b: save_file({"x": torch.zeros(1)}, b / "model-00009-of-00009.safetensors"))):
        base = tmp_path / case
        shutil.copytree(project / "models" / "base", base)
        _shard(base)
        load_base(base)  # sharded and whole: loads
        damage(base)
        with pytest.raises(WeightsError) as err:
            load_base(base)
        ledger.check(AREA, f"base folder: a shard {case}", "shard(s) model-0000" in str(err.value), detail=err.value)
