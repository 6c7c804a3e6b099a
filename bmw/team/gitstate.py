"""Git checks: a repository with a commit, and a tree that queued experiments can run from."""

from __future__ import annotations

from pathlib import Path

from scmrepo.exceptions import SCMError
from scmrepo.git import Git

from bmw.team.findings import Finding

SHOWN = 3  # paths named in a message; the rest are counted


def open_git(root: Path) -> Git | None:
    try:
        return Git(str(root))
    except SCMError:
        return None


def check_repo(scm: Git | None) -> Finding:
    if scm is None:
        return Finding("git.repo", "blocker", "not a git repository: DVC cannot version params, locks or experiments",
                       "git init && git add -A && git commit -m 'Initial commit'")
    if scm.no_commits:
        return Finding("git.repo", "blocker",
                       "the git repository has no commit: dvclive's Live() crashes and `dvc exp` has no baseline",
                       "git add -A && git commit -m 'Initial commit'")
    return Finding("git.repo", "ok", f"git repository at commit {scm.get_rev()[:7]}")


def _named(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(sorted(paths)[:SHOWN]) + more


def check_clean(scm: Git, for_queue: bool) -> list[Finding]:
    """Untracked files are not copied into a queued experiment's run; tracked changes are (as of queueing)."""
    staged, unstaged, untracked = scm.status()  # staged: {"add" | "delete" | "modify": [path, ...]}
    modified = sorted({path for paths in staged.values() for path in paths} | set(unstaged))
    findings = []
    if untracked:
        severity = "blocker" if for_queue else "warning"
        findings.append(Finding(
            "git.untracked", severity,
            f"{len(untracked)} untracked file(s) ({_named(untracked)}): queued experiments "
            "(`dvc exp run --queue`) run without them, and no experiment or clone records them",
            "git add them and commit (or list them in .gitignore if they are not part of the project)"))
    if modified:
        findings.append(Finding(
            "git.modified", "warning",
            f"{len(modified)} uncommitted change(s) ({_named(modified)}): an experiment queued now carries them "
            "as they are at queue time, but teammates' clones of the last commit do not",
            "git commit them before queueing or pushing experiments"))
    if not findings:
        findings.append(Finding("git.clean", "ok", "no uncommitted changes or untracked files"))
    return findings
