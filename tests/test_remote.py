"""Team use through a shared S3 remote: a real S3 server (moto) on 127.0.0.1, git clones of the project.

A producer, a copy of the session's pipeline run (tests/conftest.py: a clone of HEAD after `dvc repro`),
commits the remote config and the run and publishes them: git push to a bare origin, `dvc push --run-cache`,
then the run cache's objects. Teammates are fresh clones of that origin.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from safetensors import safe_open

from bench.remote import bench
from bmw.io import sha256_bytes
from bmw.team.runcache import not_run_cacheable
from tests.s3_server import S3Server, add_remote, run, team_env

ROOT = Path(__file__).resolve().parents[1]
PRUNED_LAYERS = 20  # params.yaml model.pruned.keep

# The first test may run the session's pipeline (~10 min on 2 cores); the experiment re-runs prune, three
# trainings and evaluations: both beyond the suite's default limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@dataclass
class Team:
    base: Path
    origin: Path
    producer: Path
    env: dict[str, str]
    outputs: dict[str, str]  # path -> sha256 of every output file the producer's dvc.lock records
    lock: dict
    left_by_plain_push: set[str]  # cache objects `dvc push --run-cache` did not upload

    def clone(self, name: str) -> Path:
        path = self.base / name
        run(["git", "clone", "-q", str(self.origin), str(path)], self.base, self.env)
        return path


def output_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file under every output in the repo's dvc.lock (cached or not)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    paths = sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})
    hashes = {}
    for rel in paths:
        top = repo / rel
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for file in files:
            hashes[file.relative_to(repo).as_posix()] = sha256_bytes(file.read_bytes())
    return hashes


def cache_objects(repo: Path) -> set[str]:
    """Object names (ab/cdef...) in the repo's local cache."""
    root = repo / ".dvc" / "cache" / "files" / "md5"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def remote_objects(server: S3Server, bucket: str) -> set[str]:
    return {k.removeprefix("cache/files/md5/") for k in server.keys(bucket, "cache/files/md5/")}


def object_name(file: Path) -> str:
    digest = hashlib.md5(file.read_bytes()).hexdigest()
    return f"{digest[:2]}/{digest[2:]}"


@pytest.fixture(scope="module")
def server():
    s3 = S3Server().start()
    yield s3
    s3.stop()


@pytest.fixture(scope="module")
def team(tmp_path_factory, server, pipeline_clone) -> Team:
    base = tmp_path_factory.mktemp("team")
    env = team_env(base / "home")
    bucket = server.create_bucket("team")
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], base, env)
    producer = base / "producer"
    # a copy, so that test_pipeline's clone stays as `dvc repro` left it; -a keeps the cache's hardlinks
    run(["cp", "-a", str(pipeline_clone), str(producer)], base, env)
    run(["git", "remote", "set-url", "origin", str(origin)], producer, env)
    add_remote(producer, env, "store", f"s3://{bucket}/cache", server.endpoint)
    run(["git", "commit", "-q", "-m", "Configure the DVC remote", ".dvc/config"], producer, env)
    run(["git", "add", "-A"], producer, env)
    if run(["git", "status", "--porcelain"], producer, env).strip():
        run(["git", "commit", "-q", "-m", "Pipeline run"], producer, env)
    run(["git", "push", "-q", "origin", "HEAD:main"], producer, env)
    run(["dvc", "push", "--run-cache"], producer, env)
    left = cache_objects(producer) - remote_objects(server, bucket)
    run([sys.executable, "-m", "bmw.team.runcache"], producer, env)
    lock = yaml.safe_load((producer / "dvc.lock").read_text())
    return Team(base, origin, producer, env, output_hashes(producer), lock, left)


def test_pull_in_a_fresh_clone_gives_identical_outputs(team):
    clone = team.clone("pull")
    run(["dvc", "pull"], clone, team.env)
    assert output_hashes(clone) == team.outputs
    assert len(team.outputs) > 100  # the data half alone is ~120 files
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone, team.env)
    assert "in sync" in run(["dvc", "status", "-c"], clone, team.env)


def test_runcache_uploads_what_push_run_cache_leaves_out(team, server):
    """`dvc push --run-cache` uploads run records, not the `cache: false` metrics and plots they name."""
    assert server.keys("team", "cache/runs/"), "no run records on the remote"
    metrics = team.producer / "metrics" / "eval" / "full" / "metrics.json"
    assert object_name(metrics) in team.left_by_plain_push
    assert cache_objects(team.producer) <= remote_objects(server, "team")


def test_repro_restores_from_the_run_cache_without_running_a_command(team, tmp_path):
    """A clone whose dvc.lock does not record the runs (say, never committed) gets them from the run cache."""
    clone = team.clone("runcache")
    with Repo(str(clone)) as repo:
        cacheable = {s.name for s in repo.index.stages if not not_run_cacheable(s)}
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    restorable = sorted(cacheable & set(lock["stages"]))
    assert {"clean", "base", "train@full", "train@lora"} <= set(restorable)
    lock["stages"] = {k: v for k, v in lock["stages"].items() if k not in cacheable}
    (clone / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    # a stage command that runs writes the sentinel and fails the repro
    shim = tmp_path / "shim"
    shim.mkdir()
    sentinel = tmp_path / "a-stage-ran"
    (shim / "python").write_text(f"#!/bin/sh\necho \"$@\" >> {sentinel}\nexit 1\n")
    (shim / "python").chmod(0o755)
    env = dict(team.env, PATH=f"{shim}:{team.env['PATH']}")
    out = run(["dvc", "repro", "--pull"], clone, env)
    assert not sentinel.exists(), sentinel.read_text()
    restored = sorted(re.findall(r"Stage '([^']+)' is cached - skipping run", out))
    assert restored == restorable, out
    assert "Running stage" not in out
    assert output_hashes(clone) == team.outputs
    produced = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert {k: produced[k]["outs"] for k in restorable} == {k: team.lock["stages"][k]["outs"] for k in restorable}


def layers(model_dir: Path) -> int:
    """Decoder layers of a saved variant: its config, for a LoRA adapter the layers it adapts, for an untrained one
    (base + plan, no weights) its plan's."""
    config = model_dir / "config.json"
    if config.exists():
        return json.loads(config.read_text())["num_hidden_layers"]
    if not (model_dir / "adapter_model.safetensors").exists():
        return json.loads((model_dir / "plan.json").read_text())["layers_after"]
    with safe_open(str(model_dir / "adapter_model.safetensors"), "pt") as tensors:
        return len({int(m.group(1)) for key in tensors.keys() if (m := re.search(r"\.layers\.(\d+)\.", key))})


def test_experiment_push_and_pull_between_teammates(team):
    alice, bob = team.clone("alice"), team.clone("bob")
    run(["dvc", "pull"], alice, team.env)
    run(["dvc", "exp", "run", "-n", "pruned-20", "-S", "model.type=pruned"], alice, team.env)
    produced = output_hashes(alice)
    results = {p: h for p, h in produced.items() if p.startswith(("models/variants/", "metrics/"))}
    params = yaml.safe_load((team.producer / "params.yaml").read_text())
    following = sorted(v for v, spec in params["variants"].items() if not (spec or {}).get("type"))
    changed = {p for p in results if p.endswith("metrics.json") and results[p] != team.outputs.get(p)}
    # the variants that follow model.type changed; those pinning a type were not re-run (their plans did not change)
    assert {p.split("/")[2] for p in changed if p.startswith("metrics/eval/")} == set(following)
    assert "Pushed experiment pruned-20" in run(["dvc", "exp", "push", "origin", "pruned-20"], alice, team.env)

    run(["dvc", "exp", "pull", "origin", "pruned-20"], bob, team.env)
    assert "pruned-20" in run(["dvc", "exp", "list", "--name-only"], bob, team.env)
    run(["dvc", "exp", "apply", "pruned-20"], bob, team.env)
    pulled = output_hashes(bob)
    assert {p: h for p, h in pulled.items() if p in results} == results
    assert pulled == produced
    assert yaml.safe_load((bob / "params.yaml").read_text())["model"]["type"] == "pruned"
    assert sorted(p.name for p in (bob / "models" / "variants").iterdir()) == sorted(params["variants"])
    assert {v: layers(bob / "models" / "variants" / v) for v in following} == dict.fromkeys(following, PRUNED_LAYERS)
    runs = {v: json.loads((bob / "metrics" / "train" / v / "run.json").read_text()) for v in following}
    assert {v: (m["type"], m["layers"]) for v, m in runs.items()} == dict.fromkeys(following, ("pruned", PRUNED_LAYERS))
    assert "Data and pipelines are up to date" in run(["dvc", "status"], bob, team.env)


def test_push_interrupted_by_a_dying_remote_resumes_after_restart(team, tmp_path):
    flaky = S3Server().start()
    try:
        bucket = flaky.create_bucket("flaky")
        pusher = team.clone("pusher")
        run(["dvc", "pull"], pusher, team.env)
        add_remote(pusher, team.env, "flaky", f"s3://{bucket}/cache", flaky.endpoint, default=False, local=True)
        local = cache_objects(pusher)
        before = {name: (pusher / ".dvc/cache/files/md5" / name).read_bytes() for name in local}

        flaky.fail_after_uploads(5)
        run(["dvc", "push", "-r", "flaky"], pusher, team.env, ok=False)
        assert flaky.wait_down(0)
        # the local cache is untouched: same objects, same bytes, each matching its md5 name
        assert cache_objects(pusher) == local
        assert {n: (pusher / ".dvc/cache/files/md5" / n).read_bytes() for n in local} == before
        assert all(hashlib.md5(data).hexdigest() == name.replace("/", "").removesuffix(".dir")
                   for name, data in before.items())
        assert "Data and pipelines are up to date" in run(["dvc", "status"], pusher, team.env)

        flaky.start()  # same port, same bucket contents
        landed = remote_objects(flaky, bucket)
        assert 5 <= len(landed) < len(local), "the push was not interrupted midway"
        out = run(["dvc", "push", "-r", "flaky"], pusher, team.env)
        assert f"{len(local) - len(landed)} files pushed" in out, out
        assert remote_objects(flaky, bucket) == local
        assert "in sync" in run(["dvc", "status", "-c", "-r", "flaky"], pusher, team.env)

        puller = team.clone("after-restart")
        add_remote(puller, team.env, "flaky", f"s3://{bucket}/cache", flaky.endpoint, default=False, local=True)
        run(["dvc", "pull", "-r", "flaky"], puller, team.env)
        assert output_hashes(puller) == team.outputs
    finally:
        flaky.stop()


def test_bench_times_push_and_pull_of_the_same_objects(team, server):
    push, pull = bench(str(team.producer), server.endpoint)
    assert push.files == pull.files > 100
    assert push.bytes == pull.bytes > 1_000_000
    assert push.seconds > 0 and pull.seconds > 0
    assert "MB/s" in push.line()


def test_every_stage_but_the_crawl_is_run_cacheable():
    """The crawl persists its output on purpose (incremental) and is shared through its dvc.lock entry."""
    with Repo(str(ROOT)) as repo:
        reasons = {s.name: not_run_cacheable(s) for s in repo.index.stages}
    assert {name: why for name, why in reasons.items() if why} == {"scrape": "persist: true on data/raw"}
