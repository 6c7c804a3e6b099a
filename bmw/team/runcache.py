"""Share DVC's run cache through the remote, outputs included.

`dvc push --run-cache` uploads only the run records (.dvc/cache/runs); the objects they name travel only
as part of some dvc.lock that is pushed. Objects of `cache: false` metrics and plots never do, so on a
teammate's machine `dvc repro` cannot restore such a stage from the run cache and runs it again.
`bmw runcache` pushes the run records and every object they name (already uploaded ones
are skipped). A stage DVC never records at all is named by `not_run_cacheable`.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator

from dvc.repo import Repo
from dvc.stage import Stage

from bmw.team.findings import Finding

log = logging.getLogger(__name__)


def not_run_cacheable(stage: Stage) -> str | None:
    """Why DVC never saves a run of `stage` to the run cache (dvc/stage/cache.py, Stage.run); None if it does."""
    if stage.always_changed or not (stage.cmd and stage.deps and stage.outs):
        return "no command, dependencies or outputs, or always_changed"
    persist = [out.def_path for out in stage.outs if out.persist]
    if persist:
        return f"persist: true on {', '.join(persist)}"
    plain = [out.def_path for out in stage.outs if not out.use_cache and not (out.is_metric or out.is_plot)]
    if plain:
        return f"cache: false on {', '.join(plain)} (an output that is neither a metric nor a plot)"
    return None


def check_run_cache(repo: Repo) -> Finding:
    """Stages a teammate re-runs although their run was pushed (persist: true is a deliberate exception)."""
    reasons = {s.name: not_run_cacheable(s) for s in repo.index.stages}
    uncached = sorted(name for name, why in reasons.items() if (why or "").startswith("cache: false"))
    if uncached:
        return Finding("pipeline.run_cache", "warning",
                       f"{', '.join(uncached)} never enter the run cache (`cache: false` on an output that is not a "
                       "metric or plot): a teammate whose dvc.lock lacks their run re-runs them",
                       "in dvc.yaml move such files under `plots:`/`metrics:` or drop their `cache: false`")
    kept = [f"{name} ({why})" for name, why in sorted(reasons.items()) if why]
    return Finding("pipeline.run_cache", "ok", f"{len(reasons) - len(kept)} of {len(reasons)} stages enter the run "
                   "cache" + (f"; kept out: {', '.join(kept)}" if kept else ""))


def run_entries(repo: Repo) -> Iterator[tuple[str, str]]:
    """(key, value) of every run record in the local cache: runs/<key[:2]>/<key>/<value>."""
    root = repo.stage_cache.cache_dir
    if not os.path.isdir(root):
        return
    for prefix in sorted(os.listdir(root)):
        for key in sorted(os.listdir(os.path.join(root, prefix))):
            for value in sorted(os.listdir(os.path.join(root, prefix, key))):
                yield key, value


def push_run_cache(repo: Repo, remote: str | None = None, jobs: int | None = None) -> tuple[int, int, int]:
    """Push run records and the objects they name; returns (records, objects transferred, objects failed)."""
    records = repo.stage_cache.push(remote)
    objs = set()
    for _, hash_infos in repo.stage_cache.get_used_objs(list(run_entries(repo))).items():
        objs |= hash_infos
    result = repo.cloud.push(objs, jobs=jobs, remote=remote)
    return len(records), len(result.transferred), len(result.failed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw runcache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", "--remote", help="DVC remote (default: the default remote)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel uploads")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    with Repo() as repo:
        for stage in repo.index.stages:
            reason = not_run_cacheable(stage)
            if reason:
                log.warning("stage %s is never run-cached (%s): teammates re-run it", stage.addressing, reason)
        records, transferred, failed = push_run_cache(repo, args.remote, args.jobs)
    log.info("%d run records, %d objects uploaded, %d failed", records, transferred, failed)
    if failed:
        raise SystemExit(f"{failed} objects named by the run cache are missing locally (dvc gc?) and were not pushed")


if __name__ == "__main__":
    main()
