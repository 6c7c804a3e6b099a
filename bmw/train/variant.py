"""train@<variant>: base + layer plan -> (none | full | LoRA) -> `models/variants/<name>/` + metrics."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

from bmw.io import atomic_dir, sha256_bytes, write_json
from bmw.models.base import BASE_DIR, compute_dtype, load_base, model_device
from bmw.models.identity import base_identity
from bmw.models.plan import PLANS_DIR, load_plan, plan_path
from bmw.models.random_base import read_marker
from bmw.models.surgery import apply_plan, decoder_layers
from bmw.models.variant import save_variant
from bmw.params import Params, ParamsError
from bmw.train.backend import check_fp8, resolve_backend, unsloth_model
from bmw.train.checkpoints import run_fingerprint
from bmw.train.config import optimizer_steps, run_config
from bmw.train.data import load_chat_split
from bmw.train.launch import is_main_process, world_size
from bmw.train.sft import fit, validation_loss
from bmw.train.summary import param_counts, untrained_summary

log = logging.getLogger(__name__)

DATA_DIR = Path("data/processed")


def train_variant(
    name: str,
    params: Params,
    out_dir: Path,
    metrics_dir: Path,
    checkpoint_dir: Path,
    *,
    base_dir: Path = BASE_DIR,
    plans_dir: Path = PLANS_DIR,
    data_dir: Path = DATA_DIR,
) -> dict:
    """Build variant `name` and write it to `out_dir`; in `metrics_dir`: `metrics.json` (the DVC metric: best
    validation loss), `run.json` (the run's figures, wall-clock times included; returned) and the loss curves.

    dvclive writes its curves, and a metrics.json of running values, as training goes: into the checkpoint
    folder, never `metrics_dir`, which appears complete right after the variant, or not at all."""
    variant, model_type = params.variant(name), params.variant_type(name)
    live_dir = Path(checkpoint_dir) / "live"
    dtype = params.base.dtype
    data = {split: data_dir / f"{split}.jsonl" for split in ("train", "validation")}
    eval_ds = load_chat_split(data["validation"])
    train_ds = load_chat_split(data["train"]) if variant.method != "none" else None
    if train_ds is not None:  # before the model is loaded
        steps, warmup = optimizer_steps(len(train_ds), params.train, variant, world_size())
        if steps <= warmup:
            raise ParamsError(
                f"variants.{name}.epochs: {variant.epochs:g} epochs of {len(train_ds)} examples are {steps} optimizer "
                f"step(s), all of them warm-up (train.warmup_ratio {params.train.warmup_ratio:g}) starting from "
                "learning rate 0: nothing would be trained")
    plan = load_plan(plan_path(name, plans_dir))
    if plan["type"] != model_type:
        raise ValueError(f"{plan_path(name, plans_dir)} is a plan of type {plan['type']!r}, variant {name!r} is of "
                         f"type {model_type!r}: run the prune stage again")
    if params.train.fp8 is True:  # the baseline's validation loss runs FP8 GEMMs too, as the trained variants' do
        check_fp8(model_device())
    backend = "none" if variant.method == "none" else resolve_backend(
        params.train.backend, weights_on_disk=read_marker(base_dir) is None, packing=params.train.packing,
        fp8=params.train.fp8 is True, compile=params.train.compile is True)
    if backend == "unsloth":
        model, tokenizer = unsloth_model(base_dir, dtype, plan, variant, params.train, params.seed)
    else:
        model, tokenizer = load_base(base_dir, dtype)
        model = apply_plan(model, plan)
    layers = len(decoder_layers(model))
    manifest = {
        "name": name,
        "method": variant.method,
        "type": model_type,
        "layers": layers,
        "base": {"path": str(base_dir), "dtype": dtype},
    }
    config = run_config(params.train, variant, params.seed, checkpoint_dir, dtype,
                        compute_dtype(dtype, params.base.compute))
    if train_ds is None:
        log.info("%s: %s architecture (%d layers), untrained", name, model_type, layers)
        loss = validation_loss(model, tokenizer, config, eval_ds, live_dir)
        total, _ = param_counts(model)
        figures, trainable, state_dict = untrained_summary(loss), 0, None
        model = None  # saved as base + plan: the weights are the base's
    else:
        fingerprint = run_fingerprint({
            "variant": variant.model_dump(), "train": params.train.model_dump(), "seed": params.seed,
            "type": model_type, "plan": plan, "backend": backend, "base": base_identity(base_dir),
            "data": {k: sha256_bytes(p.read_bytes()) for k, p in data.items()},
        })
        log.info("%s: %s on %s (%d layers), %d train / %d validation examples, backend %s",
                 name, variant.method, model_type, layers, len(train_ds), len(eval_ds), backend)
        model, figures, state_dict = fit(model, tokenizer, config, train_ds, eval_ds, metrics_dir=live_dir,
                                         fingerprint=fingerprint)
        if not is_main_process():
            return figures  # rank 0 of a job on several GPUs writes the variant and its metrics
        if not figures["changed_tensors"]:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a resume would train nothing again
            ratio = params.train.warmup_ratio
            raise RuntimeError(
                f"variants.{name}: its {figures['steps']} optimizer step(s) left every trainable weight as it was, "
                f"nothing was trained (learning rate {config.args.learning_rate:g}, the first "
                f"{math.ceil(figures['max_steps'] * ratio)} of {figures['max_steps']} steps warming up from 0 at "
                f"train.warmup_ratio {ratio:g}). Raise variants.{name}.epochs or variants.{name}.lr, or lower "
                "train.warmup_ratio")
        total, trainable = param_counts(model)
    run = {
        "trained": bool(figures["changed_tensors"]), "method": variant.method, "type": model_type, "layers": layers,
        "total_params": total, "trainable_params": trainable, "backend": backend, **figures,
    }
    with atomic_dir(metrics_dir, keep=(".gitignore",)) as metrics:
        shutil.copytree(live_dir / "plots", metrics / "plots")
        write_json(metrics / "run.json", run)
        write_json(metrics / "metrics.json", {"best_eval_loss": run["best_eval_loss"]})
        # installed first, the metrics right after
        save_variant(out_dir, model, tokenizer, manifest, plan, state_dict, plan_file=plan_path(name, plans_dir))
    if checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)  # the run is complete: its checkpoints have no further use
    log.info("%s: wrote %s and %s", name, out_dir, metrics_dir)
    return run
