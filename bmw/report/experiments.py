"""The cross-type table: every variant of every `model.type`, read from DVC experiments.

`bmw experiments --run` queues one experiment per model type (`dvc exp run --queue -S model.type=...`) and runs
the queue; without `--run` it only prints the table of the experiments already there. `--gpus 0,1` runs that many
experiments at once through DVC's own queue (`dvc queue start -j 2`), each stage on a GPU of its own
(bmw/gpus.py: the stages lease the ids of BMW_GPUS), follows them to the end and prints the table; a failed
experiment's log tail is printed and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from bmw.gpus import ENV_IDS, gpu_ids
from bmw.models.thinking import MODES
from bmw.params import ModelType
from bmw.report.tables import fmt, markdown_table

TYPES: tuple[ModelType, ...] = ("original", "dropped", "pruned", "laco", "replaceme")
COLUMNS = [("Test perplexity ↓", "perplexity", 2), ("Knowledge MCQA ↑", "mcqa_knowledge_acc", 3),
           ("Held-out MCQA ↑", "mcqa_heldout_acc", 3), ("Semantic entropy ↓", "semantic_entropy", 3),
           ("QA answer F1 ↑", "qa_token_f1", 3)]  # header, key of metrics/eval/<variant>/metrics.json, digits
# a second thinking mode's figures (eval.enable_thinking: [false, true]): shown where an experiment has them
MODE_COLUMNS = [column for mode in MODES for column in (
    (f"Semantic entropy ({mode.replace('_', '-')}) ↓", f"semantic_entropy_{mode}", 3),
    (f"QA answer F1 ({mode.replace('_', '-')}) ↑", f"qa_token_f1_{mode}", 3))]


def _runs(exp_show: list[dict]) -> list[tuple[str, dict]]:
    """(name, data) of every experiment, newest first, then the commits they derive from."""
    runs, commits = [], []
    for commit in exp_show:
        if commit.get("rev") == "workspace" or not commit.get("data"):
            continue
        for exp in commit.get("experiments") or []:
            runs += [(exp.get("name") or r["rev"][:7], r["data"]) for r in exp["revs"] if r.get("data")]
        commits.append((commit.get("name") or commit["rev"][:7], commit["data"]))
    return runs + commits


def _columns(exp_show: list[dict]) -> list[tuple[str, str, int]]:
    keys = {key for _, data in _runs(exp_show) for m in data["metrics"].values() for key in (m.get("data") or {})}
    return COLUMNS + [c for c in MODE_COLUMNS if c[1] in keys]


def cross_type_rows(exp_show: list[dict]) -> list[list[str]]:
    """One row per (model type, variant), taken from the newest run of that type."""
    columns = _columns(exp_show)
    newest: dict[str, tuple[str, dict]] = {}
    for name, data in _runs(exp_show):
        params = data["params"]["params.yaml"]["data"]
        newest.setdefault(params["model"]["type"], (name, data))
    rows, seen = [], set()
    for type_ in sorted(newest, key=lambda t: TYPES.index(t) if t in TYPES else len(TYPES)):
        name, data = newest[type_]
        params = data["params"]["params.yaml"]["data"]
        for variant, spec in params["variants"].items():
            metrics = (data["metrics"].get(f"metrics/eval/{variant}/metrics.json") or {}).get("data") or {}
            row_type = (spec or {}).get("type") or type_
            if (row_type, variant) in seen:  # a variant pinning its type is the same in every experiment
                continue
            seen.add((row_type, variant))
            cells = [fmt(metrics.get(key), digits) for _, key, digits in columns]
            rows.append([f"{row_type}/{variant}", name] + cells)
    return rows


def cross_type_table(exp_show: list[dict]) -> str:
    return markdown_table(["Model", "Experiment"] + [c[0] for c in _columns(exp_show)], cross_type_rows(exp_show))


def _dvc(*args: str, **kwargs) -> subprocess.CompletedProcess:
    # through this interpreter: the GPU machine installs packages with --target, without a `dvc` script
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=True, text=True, **kwargs)


def queue_status() -> dict[str, dict]:
    """The tasks of the DVC queue by revision: {rev: {"name", "status"}}, status Queued/Running/Success/Failed."""
    from dvc.repo import Repo

    with Repo() as repo:
        return {t["rev"]: {"name": t.get("name") or t["rev"][:7], "status": t["status"]}
                for t in repo.experiments.celery_queue.status()}


def queue_experiments(types: str, sets: list[str]) -> list[str]:
    """Queue one experiment per type (with the extra `-S` settings); the revisions of the tasks it added."""
    before = set(queue_status())
    _dvc("exp", "run", "--queue", "-S", f"model.type={types}", *(a for s in sets for a in ("-S", s)))
    return [rev for rev in queue_status() if rev not in before]


def follow_queue(revs: list[str], status: Callable[[], dict[str, dict]] = queue_status, poll_s: float = 10.0,
                 say: Callable[[str], None] = print) -> dict[str, dict]:
    """Wait until every task of `revs` has ended, saying each change of status; their last status."""
    seen: dict[str, str] = {}
    start = time.monotonic()
    while True:
        tasks = {rev: task for rev, task in status().items() if rev in revs}
        for rev, task in tasks.items():
            if seen.get(rev) != task["status"]:
                say(f"[{time.monotonic() - start:7.0f} s] {task['name']}: {task['status']}")
                seen[rev] = task["status"]
        if len(tasks) == len(revs) and all(t["status"] in ("Success", "Failed") for t in tasks.values()):
            return tasks
        time.sleep(poll_s)


def run_on_gpus(revs: list[str], gpus: list[str]) -> list[str]:
    """Run the queue with one worker per GPU, the stages leasing the GPUs; the names of the failed experiments."""
    _dvc("queue", "start", "-j", str(len(gpus)), env={**os.environ, ENV_IDS: ",".join(gpus)})
    ended = follow_queue(revs)
    failed = [t["name"] for t in ended.values() if t["status"] == "Failed"]
    for name in failed:
        logs = subprocess.run([sys.executable, "-m", "dvc", "queue", "logs", name], capture_output=True, text=True,
                              check=False)
        print(f"--- {name} failed; the end of its log (dvc queue logs {name}):", file=sys.stderr)
        print("\n".join((logs.stdout + logs.stderr).splitlines()[-40:]), file=sys.stderr)
    return failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="queue and run one experiment per model type first")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated model types to run")
    parser.add_argument("-S", "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a param of every experiment, as `dvc exp run -S` (repeatable)")
    parser.add_argument("--gpus", default=None,
                        help="GPU ids, e.g. 0,1: run that many experiments at once, no two stages on one GPU")
    args = parser.parse_args(argv)
    try:
        gpus = gpu_ids(args.gpus)
    except ValueError as e:
        parser.error(f"--gpus: {e}")
    failed: list[str] = []
    if args.run:
        revs = queue_experiments(args.types, args.sets)
        if gpus:
            failed = run_on_gpus(revs, gpus)
        else:
            _dvc("exp", "run", "--run-all")
    elif gpus or args.sets:
        parser.error("--gpus and --set go with --run")
    print(cross_type_table(json.loads(_dvc("exp", "show", "--json", capture_output=True).stdout)))
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
