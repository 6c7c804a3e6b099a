"""Layer plan files `models/plans/<variant>.json` (the plan of the variant's type) and `_summary.json` (sizes by type):
written by the prune stage, replayed by `surgery.apply_plan`.

A plan is a JSON-able dict; `bmw.prune.plans` documents its keys and makes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from bmw.io import write_json

PLANS_DIR = Path("models/plans")
PLAN_KEYS = ("type", "layers_before", "layers_after", "operations")
SUMMARY = "_summary.json"  # no variant name starts with "_"


def plan_path(variant: str, plans_dir: str | Path = PLANS_DIR) -> Path:
    return Path(plans_dir) / f"{variant}.json"


def load_plans_by_type(plans_dir: str | Path = PLANS_DIR) -> dict[str, dict]:
    """One plan per type among the variants' plan files (variants of one type share it)."""
    plans = [load_plan(p) for p in sorted(Path(plans_dir).glob("*.json")) if p.name != SUMMARY]
    return {plan["type"]: plan for plan in plans}


def load_plan(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such plan; run the prune stage (python -m stages.prune) first")
    plan = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in PLAN_KEYS if k not in plan]
    if missing:
        raise ValueError(f"{path}: not a layer plan, missing {', '.join(missing)}")
    return plan


def save_plan(path: str | Path, plan: dict) -> None:
    write_json(path, plan)
