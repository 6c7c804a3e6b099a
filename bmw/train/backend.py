"""Choose the training backend: Unsloth where it can run, else transformers + PEFT + TRL."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bmw.models.surgery import apply_plan
from bmw.params import TrainParams, VariantParams

log = logging.getLogger(__name__)

Backend = Literal["transformers", "unsloth"]


def unsloth_available() -> bool:
    # Unsloth's kernels are CUDA-only; importing it on a CPU host raises, so check before importing.
    return torch.cuda.is_available() and importlib.util.find_spec("unsloth") is not None


def resolve_backend(requested: str, weights_on_disk: bool = True, packing: bool = False) -> Backend:
    """`weights_on_disk` False: a random base, whose weights Unsloth's loader (it reads the folder) cannot make.
    `packing`: packed batches train on transformers alone, whose attention `config.ensure_packing_safe` can vouch
    for; Unsloth swaps in attention kernels of its own, which keep packed examples apart only when fed by its own
    trainer's collator, and which the model's `_attn_implementation` does not name."""
    if requested not in ("auto", "transformers", "unsloth"):
        raise ValueError(f"train.backend: unknown backend {requested!r}; expected auto, transformers or unsloth")
    if requested == "transformers":
        return "transformers"
    if not weights_on_disk:
        if requested == "unsloth":
            raise RuntimeError("train.backend: unsloth loads the base's weights from its folder, and a random base "
                               "(base.name random:<shape>) has none there; use train.backend: auto or transformers")
        log.info("train.backend auto: a random base, using transformers + PEFT + TRL")
        return "transformers"
    if packing:
        if requested == "unsloth":
            raise RuntimeError("train.packing: true with train.backend: unsloth: its attention kernels are not the "
                               "model's attention implementation, and nothing here can check that they keep packed "
                               "examples apart; use train.backend: auto or transformers, or train.packing: false")
        log.info("train.backend auto: packed batches, using transformers + PEFT + TRL (an attention with a "
                 "per-document mask)")
        return "transformers"
    if requested == "unsloth":
        if not unsloth_available():
            raise RuntimeError(
                "train.backend: unsloth needs a CUDA GPU and the unsloth package "
                "(pip install -e '.[gpu]'); use train.backend: auto or transformers here"
            )
        return "unsloth"
    if unsloth_available():
        return "unsloth"
    reason = "no CUDA GPU" if not torch.cuda.is_available() else "unsloth is not installed"
    log.info("train.backend auto: %s, using transformers + PEFT + TRL", reason)
    return "transformers"


def linear_layer_names(model: nn.Module) -> list[str]:
    """Names of the decoder's linear layers (LM head excluded): what PEFT's "all-linear" targets."""
    head = model.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}
    return sorted(names)


def unsloth_model(
    base_dir: Path, dtype: str, plan: dict, variant: VariantParams, train: TrainParams, seed: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base through Unsloth's fast loader, the plan applied, and for LoRA Unsloth's adapter on all linears.

    Needs CUDA and the `gpu` extra: not exercised on CPU hosts (resolve_backend never picks it there).
    """
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=train.max_length,
        dtype=getattr(torch, dtype),
        load_in_4bit=False,
        full_finetuning=variant.method == "full",
    )
    model = apply_plan(model, plan)
    if variant.method == "lora":
        model = FastLanguageModel.get_peft_model(
            model,
            r=variant.r,
            lora_alpha=variant.alpha,
            lora_dropout=variant.dropout,
            target_modules=linear_layer_names(model),
            use_gradient_checkpointing="unsloth" if train.gradient_checkpointing else False,
            random_state=seed,
        )
    return model, tokenizer
