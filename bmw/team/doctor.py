"""`bmw doctor`: preflight checks for working as a team on one DVC remote.

Each finding is a blocker (sharing breaks, often silently), a warning, or ok, with a one-line fix.
Exits 1 when there is a blocker. `--for-queue` also treats what breaks queued experiments as blockers.
Secrets (remote credentials, AWS_* variables, URL passwords) never appear in the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dvc.exceptions import DvcException, NotDvcRepoError
from dvc.repo import Repo
from scmrepo.git import Git

from bmw.team.cachelink import check_cache_link
from bmw.team.findings import Finding, exit_status, render_json, render_text
from bmw.team.gitstate import check_clean, check_repo, open_git
from bmw.team.probe import check_reachable
from bmw.team.redact import redact, secret_values
from bmw.team.remoteconfig import (
    check_committed,
    check_credentials,
    check_default,
    check_experiments,
)
from bmw.team.runcache import check_run_cache

DEFAULT_TIMEOUT_S = 10.0


def _dvc_checks(repo: Repo, scm: Git | None, for_queue: bool, timeout: float) -> list[Finding]:
    has_commit = scm is not None and not scm.no_commits
    findings = [check_default(repo)]
    name = repo.config["core"].get("remote")
    remote_ok = findings[0].severity == "ok"
    if remote_ok and has_commit:
        findings += [check_committed(repo, scm), check_experiments(repo, scm)]
    findings.append(check_credentials(repo, scm))
    if remote_ok:
        findings.append(check_reachable(repo, name, timeout))
    findings += [check_cache_link(repo), check_run_cache(repo)]
    if has_commit:
        findings += check_clean(scm, for_queue)
    return findings


def diagnose(root: str | Path = ".", for_queue: bool = False, timeout: float = DEFAULT_TIMEOUT_S) -> list[Finding]:
    """Every finding for the DVC project containing `root`, secrets redacted."""
    scm = open_git(Path(root))
    findings = [check_repo(scm)]
    secrets = secret_values({})
    try:
        # without git, DVC opens the project only in its no-SCM mode
        with Repo(str(root), config=None if scm else {"core": {"no_scm": True}}) as repo:
            secrets = secret_values(repo.config["remote"])
            findings += _dvc_checks(repo, scm, for_queue, timeout)
    except NotDvcRepoError:
        findings.append(Finding("dvc.repo", "blocker", f"no DVC project at {Path(root).resolve()}",
                                "dvc init && git add .dvc && git commit -m 'DVC init'"))
    except DvcException as exc:
        findings.append(Finding("dvc.repo", "blocker", f"DVC cannot load the project: {exc}",
                                "dvc config -l shows the configuration; fix the key named in the message"))
    finally:
        if scm is not None:
            scm.close()
    return [dataclasses.replace(f, problem=redact(f.problem, secrets), fix=redact(f.fix, secrets)) for f in findings]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--for-queue", action="store_true",
                        help="also block on what breaks queued experiments (untracked files)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for the remote")
    parser.add_argument("--repo", default=".", help="the project folder (default: here)")
    args = parser.parse_args(argv)
    findings = diagnose(args.repo, for_queue=args.for_queue, timeout=args.timeout)
    sys.stdout.write(render_json(findings) if args.json else render_text(findings))
    raise SystemExit(exit_status(findings))


if __name__ == "__main__":
    main()
