"""`bmw doctor` on real temporary git + DVC projects, probing a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dvc.config import Config
from dvc.repo import Repo

from bmw.team.doctor import diagnose
from bmw.team.findings import Finding, exit_status
from tests.s3_server import (
    CREDENTIAL_VARS,
    FAKE_KEY_ID,
    FAKE_SECRET,
    REGION,
    S3Server,
    isolation,
    run,
    team_env,
)

BUCKET = "doctor"
STAGE = "python -c \"import yaml; open('out.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['n'] * 7))\""


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    server.create_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, str]:
    """This process and its subprocesses see no real credentials or machine-wide AWS/DVC config."""
    for name in CREDENTIAL_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in isolation(tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    return team_env(tmp_path / "home")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def new_project(path: Path, *, commit: bool = True) -> Path:
    """git + DVC project with one pipeline stage and a hardlink cache."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    Repo.init(str(path)).close()
    with Config(str(path / ".dvc")).edit("repo") as conf:
        conf["cache"]["type"] = "hardlink,copy"
    (path / "params.yaml").write_text("n: 1\n")
    (path / "dvc.yaml").write_text(f"stages:\n  gen:\n    cmd: {json.dumps(STAGE)}\n    params:\n      - n\n"
                                   "    outs:\n      - out.txt\n")
    (path / ".gitignore").write_text("/out.txt\n")
    if commit:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "Project")
    return path


def set_remote(repo: Path, endpoint: str, *, bucket: str = BUCKET, level: str = "repo",
               credentials: str | None = "local") -> None:
    """The default remote `store` (at `level`), with the fake credentials at `credentials` level."""
    with Config(str(repo / ".dvc")).edit(level) as conf:
        conf["core"]["remote"] = "store"
        conf["remote"]["store"] = {"url": f"s3://{bucket}/cache", "endpointurl": endpoint, "region": REGION}
    if credentials:
        with Config(str(repo / ".dvc")).edit(credentials) as conf:
            conf["remote"].setdefault("store", {}).update(access_key_id=FAKE_KEY_ID, secret_access_key=FAKE_SECRET)


def commit_all(repo: Path, message: str = "Configure the DVC remote") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def healthy(tmp_path, env, s3) -> Path:
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint)
    commit_all(repo)
    return repo


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def only_problem(findings: list[Finding]) -> Finding:
    problems = [f for f in findings if f.severity != "ok"]
    assert len(problems) == 1, problems
    return problems[0]


def test_healthy_project_is_all_ok(healthy, env):
    findings = diagnose(healthy)
    assert [f for f in findings if f.severity != "ok"] == []
    assert {"git.repo", "remote.default", "remote.committed", "remote.experiments", "remote.credentials",
            "remote.reachable", "cache.link", "pipeline.run_cache", "git.clean"} == set(by_check(findings))
    assert "hardlink" in by_check(findings)["cache.link"].problem
    proc = subprocess.run([sys.executable, "-m", "bmw.team.doctor", "--json", "--for-queue"], cwd=healthy, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_not_a_git_repository(tmp_path, env):
    repo = tmp_path / "repo"
    repo.mkdir()
    Repo.init(str(repo), no_scm=True).close()
    findings = diagnose(repo)
    assert by_check(findings)["git.repo"].severity == "blocker"
    assert "not a git repository" in by_check(findings)["git.repo"].problem
    assert exit_status(findings) == 1


def test_git_repository_without_dvc(tmp_path, env):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "Empty")
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("dvc.repo", "blocker")
    assert finding.fix.startswith("dvc init")


def test_repository_without_a_commit(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo", commit=False)
    set_remote(repo, s3.endpoint)
    finding = by_check(diagnose(repo))["git.repo"]
    assert finding.severity == "blocker" and "no commit" in finding.problem


def test_no_default_remote(tmp_path, env):
    repo = new_project(tmp_path / "repo")
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.default", "blocker")
    assert "dvc remote add -d" in finding.fix


def test_default_remote_not_committed(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint)  # in .dvc/config, not committed
    findings = diagnose(repo)
    committed = by_check(findings)["remote.committed"]
    assert committed.severity == "blocker" and "not committed" in committed.problem
    assert "git commit" in committed.fix
    assert by_check(findings)["remote.reachable"].severity == "ok"


def test_default_remote_only_in_config_local(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint, level="local")
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.committed", "warning")
    assert "config.local" in finding.problem


def test_experiment_made_before_the_remote_pushes_nothing(tmp_path, env, s3, monkeypatch):
    """With credentials from the environment `dvc exp push` reports success (with them in config.local it fails)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    bucket = s3.create_bucket("doctor-exp")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    repo = new_project(tmp_path / "repo")
    git(repo, "remote", "add", "origin", str(origin))
    run(["dvc", "exp", "run", "-n", "early", "-S", "n=6"], repo, env)
    set_remote(repo, s3.endpoint, bucket=bucket, credentials=None)
    commit_all(repo)
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.experiments", "blocker")
    assert "early" in finding.problem
    # what the finding warns about: the push reports success and uploads nothing
    assert "Pushed experiment early" in run(["dvc", "exp", "push", "origin", "early"], repo, env)
    assert s3.keys(bucket) == []


def test_unreachable_remote(tmp_path, env):
    gone = S3Server().start()
    gone.stop()  # a port nothing listens on
    repo = new_project(tmp_path / "repo")
    set_remote(repo, gone.endpoint)
    commit_all(repo)
    finding = only_problem(diagnose(repo, timeout=5))
    assert (finding.check, finding.severity) == ("remote.reachable", "blocker")
    assert "cannot reach" in finding.problem and gone.endpoint in finding.problem


def test_remote_that_never_answers(tmp_path, env):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # connections complete, no byte ever comes back
    try:
        repo = new_project(tmp_path / "repo")
        set_remote(repo, f"http://127.0.0.1:{silent.getsockname()[1]}")
        commit_all(repo)
        start = time.monotonic()
        finding = only_problem(diagnose(repo, timeout=2))
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert (finding.check, finding.severity) == ("remote.reachable", "blocker")
    assert "timeout" in finding.problem.lower() or "did not answer" in finding.problem
    assert elapsed < 8  # the probe's limit (2 s) plus the other checks


def test_missing_credentials(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint, credentials=None)
    commit_all(repo)
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.reachable", "blocker")
    assert "no credentials" in finding.problem and "--local" in finding.fix


def test_missing_bucket(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint, bucket="no-such-bucket")
    commit_all(repo)
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.reachable", "blocker")
    assert "'no-such-bucket'" in finding.problem and "does not exist" in finding.problem


def test_credentials_in_tracked_config_are_reported_never_printed(tmp_path, env, s3):
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint, credentials="repo")
    commit_all(repo)
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("remote.credentials", "blocker")
    assert "secret_access_key" in finding.problem and "rotate" in finding.fix
    for args in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "-m", "bmw.team.doctor", *args], cwd=repo, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 1
        assert FAKE_SECRET not in proc.stdout + proc.stderr and FAKE_KEY_ID not in proc.stdout + proc.stderr


def test_secret_in_an_error_message_is_redacted(tmp_path, env):
    gone = S3Server().start()
    gone.stop()
    repo = new_project(tmp_path / "repo")
    set_remote(repo, f"http://alice:hunter2hunter2@127.0.0.1:{gone.port}")
    commit_all(repo)
    text = json.dumps([f.__dict__ for f in diagnose(repo, timeout=5)])
    assert "cannot reach" in text
    assert "hunter2hunter2" not in text and "http://***@127.0.0.1" in text


def project_with_cache_type(tmp_path: Path, s3, cache_type: str) -> Path:
    """A committed project on the S3 remote whose cache links outputs by `cache_type`."""
    repo = new_project(tmp_path / "repo")
    set_remote(repo, s3.endpoint)
    with Config(str(repo / ".dvc")).edit("repo") as conf:
        conf["cache"]["type"] = cache_type
    commit_all(repo)
    return repo


def test_cache_that_copies(tmp_path, env, s3):
    repo = project_with_cache_type(tmp_path, s3, "copy")
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("cache.link", "warning")
    assert "twice" in finding.problem


def test_reflink_first_where_reflinks_fail_copies_on_commit(tmp_path, env, s3):
    repo = project_with_cache_type(tmp_path, s3, "reflink,hardlink,copy")
    if by_check(diagnose(repo))["cache.link"].severity == "ok":
        pytest.skip("reflinks work on this filesystem: a commit clones, nothing is stored twice")
    finding = only_problem(diagnose(repo))
    assert (finding.check, finding.severity) == ("cache.link", "warning")
    assert "dvc config cache.type hardlink,copy" in finding.fix


def _other_filesystem(path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the temp dir's")
    return shm


@pytest.mark.parametrize(("types", "severity"), [("hardlink,copy", "warning"), ("hardlink", "blocker")])
def test_hardlink_that_cannot_work(tmp_path, env, s3, types, severity):
    repo = new_project(tmp_path / "repo")
    cache = _other_filesystem(tmp_path) / f"bmw-doctor-cache-{os.getpid()}-{severity}"
    set_remote(repo, s3.endpoint)
    with Config(str(repo / ".dvc")).edit("repo") as conf:
        conf["cache"].update(type=types, dir=str(cache))
    commit_all(repo)
    try:
        finding = only_problem(diagnose(repo))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert (finding.check, finding.severity) == ("cache.link", severity)


def test_untracked_files_block_only_a_queue(healthy):
    (healthy / "helper.py").write_text("X = 1\n")
    finding = only_problem(diagnose(healthy))
    assert (finding.check, finding.severity) == ("git.untracked", "warning")
    assert "helper.py" in finding.problem
    queued = only_problem(diagnose(healthy, for_queue=True))
    assert (queued.check, queued.severity) == ("git.untracked", "blocker")


def test_uncommitted_changes_warn(healthy):
    (healthy / "params.yaml").write_text("n: 2\n")
    (healthy / "helper.py").write_text("X = 1\n")
    git(healthy, "add", "helper.py")  # staged, not committed
    finding = only_problem(diagnose(healthy, for_queue=True))
    assert (finding.check, finding.severity) == ("git.modified", "warning")
    assert "2 uncommitted change(s) (helper.py, params.yaml)" in finding.problem


def test_stage_kept_out_of_the_run_cache(healthy):
    (healthy / "dvc.yaml").write_text(f"stages:\n  gen:\n    cmd: {json.dumps(STAGE)}\n    params:\n      - n\n"
                                      "    outs:\n      - out.txt:\n          cache: false\n")
    commit_all(healthy, "Keep out.txt in git")
    finding = only_problem(diagnose(healthy))
    assert (finding.check, finding.severity) == ("pipeline.run_cache", "warning")
    assert finding.problem.startswith("gen ")
