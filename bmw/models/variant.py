"""A trained variant on disk: written atomically, reloaded by eval with `load_variant`.

Layout of `models/variants/<name>/`:
- `variant.json`: name, method, type, layers, format (`full` | `lora` | `base`) and the base reference;
- `plan.json`: the layer plan the architecture was derived with (`plan.safetensors` beside it: a plan's tensors);
- `full`: `config.json` + `model.safetensors` of the derived architecture (its `num_hidden_layers` = layers);
- `lora`: `adapter_config.json` + `adapter_model.safetensors`, rebuilt on base + plan;
- `base` (an untrained variant): no weights at all, rebuilt as base + plan: its weights are the base's, and a copy
  would store them twice (16 GB at Qwen3-8B's size);
- the tokenizer, always.
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

from bmw.io import atomic_dir, write_json
from bmw.models.base import load_base
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
        save_plan(tmp / PLAN, plan, tensors_from=plan_file)
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
    request; an untrained one: base + plan."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir, local_files_only=True, trust_remote_code=False)
    if manifest["format"] == "full":
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=manifest["base"]["dtype"], local_files_only=True,
                                                     trust_remote_code=False)
    else:
        base, _ = load_base(Path(base_dir or manifest["base"]["path"]), manifest["base"]["dtype"])
        model = apply_plan(base, load_plan(out_dir / PLAN))
        if manifest["format"] == "lora":
            model = PeftModel.from_pretrained(model, out_dir)
            if merge:
                model = model.merge_and_unload()
    return model.eval(), tokenizer
