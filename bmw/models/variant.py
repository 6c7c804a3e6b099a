"""A trained variant on disk: written atomically, reloaded by eval with `load_variant`.

Layout of `models/variants/<name>/`:
- `variant.json`: name, method, type, layers, format (`full` | `lora` | `base`) and the base reference; a variant
  rebuilt from base + plan (`lora`, `base`) also records the base's identity (`bmw.models.identity`) and its plan
  file's SHA-256, and is refused on any other base or plan;
- `plan.json`: the layer plan the architecture was derived with (`plan.safetensors` beside it: a plan's tensors);
- `full`: `config.json` + `model.safetensors` of the derived architecture (its `num_hidden_layers` = layers);
- `lora`: `adapter_config.json` + `adapter_model.safetensors`, rebuilt on base + plan;
- `base` (an untrained variant): no weights at all, rebuilt as base + plan: its weights are the base's, and a copy
  would store them twice (16 GB at Qwen3-8B's size);
- the tokenizer, always; its files that equal the base's are hard links to them (DVC would keep a copy).
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bmw.io import atomic_dir, link_identical_files, sha256_bytes, write_json
from bmw.models.base import load_base
from bmw.models.identity import base_identity, identity_differences
from bmw.models.plan import load_plan, save_plan
from bmw.models.surgery import apply_plan

MANIFEST = "variant.json"
PLAN = "plan.json"


def save_variant(
    out_dir: Path,
    model: PreTrainedModel | PeftModel | None,
    tokenizer: PreTrainedTokenizerBase,
    manifest: dict,
    plan: dict,
    state_dict: dict | None = None,
    plan_file: Path | None = None,
) -> None:
    """`model` is a PeftModel for LoRA (the adapter alone is saved), a plain model (full safetensors) or None for
    an untrained variant (base + plan); `state_dict`: its weights gathered from the processes of an FSDP job;
    `plan_file`: where `plan` was loaded from (its tensors are linked from there, not stored again)."""
    fmt = "base" if model is None else "lora" if isinstance(model, PeftModel) else "full"
    if isinstance(model, PeftModel):  # PEFT writes a set in the process's string-hash order: bytes would vary
        for config in model.peft_config.values():
            if isinstance(config.target_modules, set):
                config.target_modules = sorted(config.target_modules)
    with atomic_dir(out_dir) as tmp:
        if model is not None:
            model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        base_dir = Path(manifest["base"]["path"])
        if base_dir.is_dir():  # the tokenizer files the base holds too: one inode (link_identical_files)
            link_identical_files(tmp, base_dir)
        save_plan(tmp / PLAN, plan, tensors_from=plan_file)
        if fmt != "full":  # rebuilt from base + plan at load: which ones, so that others are refused
            manifest = {**manifest, "base": manifest["base"] | {"identity": base_identity(manifest["base"]["path"])},
                        "plan_sha256": sha256_bytes((tmp / PLAN).read_bytes())}
        write_json(tmp / MANIFEST, {**manifest, "format": fmt})


def read_manifest(out_dir: Path) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir}: not a saved variant ({MANIFEST} missing); run train@<variant> first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_variant(
    out_dir: Path, merge: bool = False, base_dir: Path | None = None
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """The variant in eval mode. LoRA: base (from `base_dir` or the recorded path) + plan + adapter, merged on
    request; an untrained one: base + plan. Both are refused, before any weight is loaded, on a base or a plan
    other than those the variant recorded."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir, local_files_only=True, trust_remote_code=False)
    if manifest["format"] == "full":
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=manifest["base"]["dtype"], local_files_only=True,
                                                     trust_remote_code=False)
    else:
        base_dir = Path(base_dir or manifest["base"]["path"])
        check_sources(out_dir, manifest, base_dir)
        base, _ = load_base(base_dir, manifest["base"]["dtype"])
        model = apply_plan(base, load_plan(out_dir / PLAN))
        if manifest["format"] == "lora":
            model = PeftModel.from_pretrained(model, out_dir)
            if merge:
                model = model.merge_and_unload()
    return model.eval(), tokenizer


def check_sources(out_dir: Path, manifest: dict, base_dir: Path) -> None:
    """Refuse a base folder or a plan file other than those the variant was saved with, saying what differs."""
    rerun = f"run train@{manifest['name']} again"
    if "identity" not in manifest["base"] or "plan_sha256" not in manifest:
        raise ValueError(f"{out_dir}/{MANIFEST} records no identity of its base and plan (saved before variants "
                         f"recorded them): {rerun}")
    plan_sha256 = sha256_bytes((out_dir / PLAN).read_bytes())
    if plan_sha256 != manifest["plan_sha256"]:
        raise ValueError(f"{out_dir}/{PLAN} is not the plan the variant was saved with (SHA-256 {plan_sha256[:12]}, "
                         f"recorded {manifest['plan_sha256'][:12]}): {rerun}")
    differences = identity_differences(manifest["base"]["identity"], base_identity(base_dir))
    if differences:
        raise ValueError(f"{out_dir} was built on the base at {manifest['base']['path']}, and the base at {base_dir} "
                         f"is another: {'; '.join(differences)}. Load it onto the base it was trained on, or {rerun}")
