"""The cross-type table: every variant of every `model.type`, read from DVC experiments.

`bmw experiments --run` queues one experiment per model type and runs them
(`dvc exp run --queue -S model.type=original,dropped,pruned,laco,replaceme`, then `dvc exp run --run-all`);
without `--run` it only prints the table of the experiments already there.
"""

from __future__ import annotations

import argparse
import json
import subprocess

from bmw.params import ModelType
from bmw.report.tables import fmt, markdown_table

TYPES: tuple[ModelType, ...] = ("original", "dropped", "pruned", "laco", "replaceme")
COLUMNS = [("Test perplexity ↓", "perplexity", 2), ("Knowledge MCQA ↑", "mcqa_knowledge_acc", 3),
           ("Held-out MCQA ↑", "mcqa_heldout_acc", 3), ("Semantic entropy ↓", "semantic_entropy", 3),
           ("QA answer F1 ↑", "qa_token_f1", 3)]  # header, key of metrics/eval/<variant>/metrics.json, digits


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


def cross_type_rows(exp_show: list[dict]) -> list[list[str]]:
    """One row per (model type, variant), taken from the newest run of that type."""
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
            cells = [fmt(metrics.get(key), digits) for _, key, digits in COLUMNS]
            rows.append([f"{row_type}/{variant}", name] + cells)
    return rows


def cross_type_table(exp_show: list[dict]) -> str:
    return markdown_table(["Model", "Experiment"] + [c[0] for c in COLUMNS], cross_type_rows(exp_show))


def _dvc(*args: str) -> str:
    return subprocess.run(["dvc", *args], check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="queue and run one experiment per model type first")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated model types to run")
    args = parser.parse_args(argv)
    if args.run:
        subprocess.run(["dvc", "exp", "run", "--queue", "-S", f"model.type={args.types}"], check=True)
        subprocess.run(["dvc", "exp", "run", "--run-all"], check=True)
    print(cross_type_table(json.loads(_dvc("exp", "show", "--json"))))


if __name__ == "__main__":
    main()
