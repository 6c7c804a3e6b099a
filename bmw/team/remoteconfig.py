"""Remote configuration checks: a default remote, committed with the project, and no credentials in git.

DVC reads `.dvc/config` from the commit it works on (an experiment's commit for `dvc exp push`) and
`.dvc/config.local` plus the global config from this machine. `config_at` rebuilds exactly that view.
"""

from __future__ import annotations

import os
from typing import Any

from dvc.config import Config
from dvc.fs import GitFileSystem
from dvc.repo import Repo
from dvc.repo.experiments.utils import exp_refs
from scmrepo.git import Git

from bmw.team.findings import Finding
from bmw.team.redact import SECRET_KEYS

COMMIT_FIX = "git add .dvc/config && git commit -m 'Configure the DVC remote'"
MOVE_FIX = ("dvc remote modify --local {name} <key> <value> (git-ignored .dvc/config.local) or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then dvc remote modify --unset {name} <key>")


def workspace_config(repo: Repo) -> Config:
    return Config(repo.dvc_dir, local_dvc_dir=repo.local_dvc_dir, validate=False)


def _git_dvc_dir(repo: Repo, scm: Git) -> str:
    return "/" + os.path.relpath(repo.dvc_dir, scm.root_dir)  # git fs paths are rooted at the git root


def config_at(repo: Repo, scm: Git, rev: str) -> Config:
    """The config DVC uses at commit `rev`: its .dvc/config, with this machine's config.local and global ones."""
    return Config(_git_dvc_dir(repo, scm), local_dvc_dir=repo.local_dvc_dir, fs=GitFileSystem(scm=scm, rev=rev),
                  validate=False)


def committed_config(repo: Repo, scm: Git) -> dict:
    """HEAD's .dvc/config on its own (no config.local, no machine config); empty if it is not committed."""
    fs = GitFileSystem(scm=scm, rev="HEAD")
    path = fs.join(_git_dvc_dir(repo, scm), Config.CONFIG)
    return Config.load_file(path, fs=fs) if fs.exists(path) else {}


def default_remote(config: Config | dict) -> tuple[str | None, dict[str, Any]]:
    """The default remote's name and its non-secret settings (what decides where data goes)."""
    name = config.get("core", {}).get("remote")
    section = config.get("remote", {}).get(name, {}) if name else {}
    return name, {k: v for k, v in section.items() if k not in SECRET_KEYS}


def check_default(repo: Repo) -> Finding:
    name, section = default_remote(repo.config)
    if not name:
        return Finding("remote.default", "blocker",
                       "no default DVC remote: `dvc push`/`dvc pull` need -r and `dvc exp push` uploads no data",
                       "dvc remote add -d store s3://<bucket>/<path> && " + COMMIT_FIX)
    if "url" not in section:
        return Finding("remote.default", "blocker", f"the default remote '{name}' is not defined (no url)",
                       f"dvc remote add -d {name} s3://<bucket>/<path>, or dvc remote default <existing remote>")
    return Finding("remote.default", "ok", f"default remote '{name}' ({section['url']})")


def check_committed(repo: Repo, scm: Git) -> Finding:
    work = workspace_config(repo)
    name, _ = default_remote(work)
    if default_remote(config_at(repo, scm, "HEAD")) != default_remote(work):
        return Finding("remote.committed", "blocker",
                       f"the default remote '{name}' is configured but not committed: clones and experiments made from "
                       "the last commit have no remote, and `dvc exp push` of such experiments uploads no data",
                       COMMIT_FIX)
    if default_remote(committed_config(repo, scm))[0] != name:
        levels = [lvl for lvl in ("local", "global", "system") if work.load_one(lvl)["core"].get("remote")]
        where = ", ".join(work.files[lvl] for lvl in levels) or "machine config"
        return Finding("remote.committed", "warning",
                       f"the default remote '{name}' is set only in {where}: clones of the project have no default "
                       "remote, so teammates' `dvc pull` fails",
                       f"dvc remote add -d {name} <url> (without --local) && {COMMIT_FIX}; keep only credentials "
                       "in .dvc/config.local")
    return Finding("remote.committed", "ok", f"the default remote '{name}' is in the last commit's .dvc/config")


def check_experiments(repo: Repo, scm: Git) -> Finding:
    """Local experiments whose commit does not configure today's default remote push no data."""
    expected = default_remote(workspace_config(repo))
    stale = sorted(ref.name for ref in exp_refs(scm)
                   if default_remote(config_at(repo, scm, scm.get_ref(str(ref)))) != expected)
    if stale:
        return Finding("remote.experiments", "blocker",
                       f"`dvc exp push` of {', '.join(stale)} uploads no data (and reports success when credentials "
                       f"come from the environment): their commits do not configure the default remote '{expected[0]}'",
                       "for each: dvc exp apply <exp> && dvc push; or re-run them after committing .dvc/config")
    return Finding("remote.experiments", "ok", "every local experiment's commit configures the default remote")


def _secret_keys(config: dict) -> dict[str, list[str]]:
    return {name: sorted(k for k in conf if k in SECRET_KEYS)
            for name, conf in sorted(config.get("remote", {}).items()) if any(k in SECRET_KEYS for k in conf)}


def check_credentials(repo: Repo, scm: Git | None) -> Finding:
    """Credentials belong in .dvc/config.local (git-ignored) or the environment, never in .dvc/config."""
    found = _secret_keys(repo.config.load_one("repo"))
    committed = _secret_keys(committed_config(repo, scm)) if scm is not None and not scm.no_commits else {}
    if not found and not committed:
        return Finding("remote.credentials", "ok", "no credentials in .dvc/config")
    named = "; ".join(f"remote '{n}': {', '.join(keys)}" for n, keys in sorted((found | committed).items()))
    name = next(iter(found or committed))
    if committed:
        return Finding("remote.credentials", "blocker",
                       f"credentials committed to git in .dvc/config ({named}): anyone with the repository has them",
                       "rotate these keys now (they stay in git history); " + MOVE_FIX.format(name=name)
                       + " and commit .dvc/config")
    return Finding("remote.credentials", "blocker",
                   f"credentials in .dvc/config, which git tracks ({named}): the next commit publishes them",
                   MOVE_FIX.format(name=name))
