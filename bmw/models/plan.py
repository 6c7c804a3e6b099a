"""Layer plan files `models/plans/<variant>.json` (the plan of the variant's type) and `_summary.json` (sizes by type):
written by the prune stage, replayed by `surgery.apply_plan`.

A plan is a JSON-able dict; `bmw.prune.plans` documents its keys and makes it. An operation may carry a tensor (the
linear map of a `replaceme` plan): `save_plan` writes it to `<plan>.safetensors` beside the JSON, which names it and
holds its SHA-256, so a change of the tensor changes the JSON (the file DVC stages depend on); `load_plan` reads it
back and refuses a tensor whose hash differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bmw.io import atomic_file, link_onto, write_json

PLANS_DIR = Path("models/plans")
PLAN_KEYS = ("type", "layers_before", "layers_after", "operations")
SUMMARY = "_summary.json"  # no variant name starts with "_"


def plan_path(variant: str, plans_dir: str | Path = PLANS_DIR) -> Path:
    return Path(plans_dir) / f"{variant}.json"


def tensors_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".safetensors")


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Of the float32 values as stored (row-major), so the hash is the same on every device."""
    return hashlib.sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


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
    refs = [(op, field, ref) for op in plan["operations"] for field, ref in op.items()
            if isinstance(ref, dict) and "tensor" in ref]
    if refs:
        stored = tensors_path(path)
        if not stored.is_file():
            raise FileNotFoundError(f"{path}: its tensors file {stored.name} is missing")
        tensors = load_file(stored)
        for op, field, ref in refs:
            tensor = tensors.get(ref["tensor"])
            if tensor is None or tensor_sha256(tensor) != ref["sha256"]:
                raise ValueError(f"{stored}: tensor {ref['tensor']!r} is missing or not the one {path.name} names "
                                 "(SHA-256 differs): run the prune stage again")
            op[field] = tensor
    return plan


def save_plan(path: str | Path, plan: dict, tensors_from: str | Path | None = None) -> None:
    """`plan` to `path`, its tensors to `<path>.safetensors`. `tensors_from`: the plan file this plan was loaded
    from; its tensors file, when it holds the same tensors, is hard-linked rather than written again, so that the prune stage's plan and a variant's copy of it are one
    inode (DVC leaves a second copy of bytes it has already cached as it is: 67 MB per variant at Qwen3-8B's
    size)."""
    tensors: dict[str, torch.Tensor] = {}
    hashes: dict[str, str] = {}
    operations = []
    for k, op in enumerate(plan["operations"]):
        op = dict(op)
        for field, value in op.items():
            if isinstance(value, torch.Tensor):
                key = f"operations.{k}.{field}"
                tensors[key] = value.detach().to("cpu", torch.float32).contiguous()
                hashes[key] = tensor_sha256(tensors[key])
                op[field] = {"tensor": key, "sha256": hashes[key]}
        operations.append(op)
    if tensors and not _link_same(tensors_from, hashes, tensors_path(path)):
        with atomic_file(tensors_path(path)) as tmp:
            save_file(tensors, str(tmp))
    write_json(path, {**plan, "operations": operations})


def _link_same(plan_file: str | Path | None, hashes: dict[str, str], target: Path) -> bool:
    """Hard-link `plan_file`'s tensors file onto `target` if it holds exactly the tensors of `hashes`."""
    source = tensors_path(plan_file) if plan_file is not None else None
    if source is None or not source.is_file():
        return False
    stored = load_file(source)
    if {key: tensor_sha256(tensor) for key, tensor in stored.items()} != hashes:
        return False
    return link_onto(source, target)  # False on another file system: the copy is written
