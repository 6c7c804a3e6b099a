"""Parallel experiments, one GPU each: the lease (bmw/gpus.py) and `bmw experiments --run --gpus` through DVC's own
queue, on a CPU with fake device ids. The stages record which id they leased and when; the test checks that no two
stages held one id at the same time, that both ids were used at once, and that the table comes out at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bmw.gpus import gpu_ids
from bmw.report.experiments import follow_queue

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for a GPU stage: lease, hold for a while, record (id, start, end, type), write the eval metrics
STAGE = textwrap.dedent("""
    import json, os, sys, time
    import yaml
    from bmw.gpus import lease_gpu

    gpu = lease_gpu(poll_s=0.2)
    start = time.time()
    time.sleep(float(os.environ.get("HOLD_S", "1")))
    kind = yaml.safe_load(open("params.yaml"))["model"]["type"]
    with open(os.environ["LEASE_LOG"], "a") as f:
        f.write(json.dumps({"gpu": gpu, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
                            "end": time.time(), "type": kind, "pid": os.getpid()}) + "\\n")
    os.makedirs("metrics/eval/full", exist_ok=True)
    json.dump({"perplexity": {"original": 10.0, "dropped": 11.0, "pruned": 90.0}[kind]},
              open("metrics/eval/full/metrics.json", "w"))
""")


def env_with(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # DVC spawns its workers as `dvc`
    return env | extra


def intervals_overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_gpu_ids_are_distinct_device_indices():
    assert gpu_ids("0, 1") == ["0", "1"]
    assert gpu_ids(None) == [] and gpu_ids("") == []
    for bad in ("0,0", "cuda:0", "a"):
        with pytest.raises(ValueError, match="distinct device indices"):
            gpu_ids(bad)


def test_leases_give_each_process_its_own_gpu_and_wait_when_all_are_taken(tmp_path):
    log = tmp_path / "leases.jsonl"
    script = tmp_path / "stage.py"
    script.write_text(STAGE.replace('kind = yaml.safe_load(open("params.yaml"))["model"]["type"]', 'kind = "original"'))
    env = env_with(BMW_GPUS="0,1", BMW_GPU_LOCKS=str(tmp_path / "locks"), LEASE_LOG=str(log), HOLD_S="1.5")
    procs = [subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    leases = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(r["gpu"] for r in leases) in (["0", "0", "1"], ["0", "1", "1"])
    assert all(r["cuda"] == r["gpu"] for r in leases)  # CUDA sees only the leased device
    for i, a in enumerate(leases):
        for b in leases[i + 1:]:
            assert a["gpu"] != b["gpu"] or not intervals_overlap(a, b), (a, b)
    # the third waited for a free id instead of doubling up: the leases cover more time than one hold
    assert max(r["end"] for r in leases) - min(r["start"] for r in leases) >= 2 * 1.5


def test_a_malformed_bmw_gpus_fails_naming_the_variable(monkeypatch):
    from bmw.gpus import lease_gpu

    monkeypatch.setenv("BMW_GPUS", "0,cuda:1")
    with pytest.raises(ValueError, match="^BMW_GPUS: GPU ids must be distinct device indices"):
        lease_gpu()


def test_a_lease_after_cuda_is_initialised_is_refused(monkeypatch):
    """CUDA reads CUDA_VISIBLE_DEVICES once: a lease taken after it initialised would not bind the process."""
    import torch

    from bmw.gpus import lease_gpu

    monkeypatch.setenv("BMW_GPUS", "0")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="before CUDA is initialised"):
        lease_gpu()


def test_bmw_experiments_starts_without_importing_torch():
    script = "import sys, bmw.report.experiments; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


def test_no_lease_without_bmw_gpus(tmp_path):
    script = "from bmw.gpus import lease_gpu; import os; print(lease_gpu(), os.environ.get('CUDA_VISIBLE_DEVICES'))"
    env = {k: v for k, v in env_with(CUDA_VISIBLE_DEVICES="3").items() if k != "BMW_GPUS"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "3"]


def test_follow_queue_reports_each_change_and_returns_when_all_ended():
    states = iter([
        {"a": {"name": "exp-a", "status": "Queued"}, "b": {"name": "exp-b", "status": "Queued"},
         "old": {"name": "older", "status": "Success"}},
        {"a": {"name": "exp-a", "status": "Running"}, "b": {"name": "exp-b", "status": "Running"}},
        {"a": {"name": "exp-a", "status": "Success"}, "b": {"name": "exp-b", "status": "Running"}},
        {"a": {"name": "exp-a", "status": "Success"}, "b": {"name": "exp-b", "status": "Failed"}},
    ])
    said: list[str] = []
    ended = follow_queue(["a", "b"], status=lambda: next(states), poll_s=0, say=said.append)
    assert {t["status"] for t in ended.values()} == {"Success", "Failed"}
    assert [s.split("] ")[1] for s in said] == ["exp-a: Queued", "exp-b: Queued", "exp-a: Running", "exp-b: Running",
                                                "exp-a: Success", "exp-b: Failed"]


@pytest.mark.timeout(600)
def test_experiments_run_in_parallel_through_the_dvc_queue_one_gpu_each(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "stage.py").write_text(STAGE)
    (repo / "params.yaml").write_text("model:\n  type: original\nvariants:\n  full:\n    method: full\n")
    (repo / "dvc.yaml").write_text(textwrap.dedent("""
        stages:
          eval:
            cmd: python stage.py
            deps: [stage.py]
            params: [model.type]
            metrics:
              - metrics/eval/full/metrics.json:
                  cache: false
    """))
    log = tmp_path / "leases.jsonl"
    env = env_with(BMW_GPU_LOCKS=str(tmp_path / "locks"), LEASE_LOG=str(log), HOLD_S="4")
    for cmd in ("git init -q", "git config user.email t@localhost", "git config user.name t", "dvc init -q",
                "git add -A", "git commit -qm project"):
        subprocess.run(cmd, shell=True, cwd=repo, env=env, check=True)
    start = time.time()
    run = subprocess.run([sys.executable, "-m", "bmw.cli", "experiments", "--run", "--types",
                          "original,dropped,pruned", "--gpus", "0,1"], cwd=repo, env=env, capture_output=True,
                         text=True, timeout=540)
    assert run.returncode == 0, run.stdout + run.stderr
    leases = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(r["type"] for r in leases) == ["dropped", "original", "pruned"]
    assert all(r["gpu"] in ("0", "1") and r["cuda"] == r["gpu"] and r["start"] >= start for r in leases)
    pairs = [(a, b) for i, a in enumerate(leases) for b in leases[i + 1:]]
    assert not any(a["gpu"] == b["gpu"] and intervals_overlap(a, b) for a, b in pairs), leases
    assert any(intervals_overlap(a, b) for a, b in pairs), f"no two experiments ran at once: {leases}"
    table = run.stdout
    for row in ("original/full", "dropped/full", "pruned/full", "90.00"):
        assert row in table, table
    assert "Success" in run.stdout  # the progress lines of the queue
