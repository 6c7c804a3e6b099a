"""Translate the typed params into TRL / PEFT configuration objects."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import PreTrainedModel
from trl import SFTConfig

from bmw.params import TrainParams, VariantParams

log = logging.getLogger(__name__)

# Attention kernels that take per-example sequence boundaries (cu_seqlens) and so keep packed examples apart.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")


def sft_config(
    train: TrainParams, variant: VariantParams, seed: int, checkpoint_dir: Path, dtype: str
) -> SFTConfig:
    """Checkpoint at every evaluation, keep the best by validation loss, log every step for the loss curves."""
    return SFTConfig(
        output_dir=str(checkpoint_dir),
        num_train_epochs=variant.epochs,
        learning_rate=variant.lr,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum,
        warmup_steps=train.warmup_ratio,  # transformers 5: a value below 1 is a ratio of the total steps
        weight_decay=train.weight_decay,
        lr_scheduler_type=train.scheduler,
        max_length=train.max_length,
        packing=train.packing,
        assistant_only_loss=train.assistant_only_loss,
        activation_checkpointing=train.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.eval_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        seed=seed,
        data_seed=seed,
        # Mixed precision only where the weights already are bf16 and a GPU runs them; CPU trains in float32.
        bf16=dtype == "bfloat16" and torch.cuda.is_available(),
        fp16=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def lora_config(variant: VariantParams) -> LoraConfig:
    # PEFT's Qwen3 default targets q/v only; every linear layer but the LM head is the usual LoRA setup.
    return LoraConfig(
        r=variant.r,
        lora_alpha=variant.alpha,
        lora_dropout=variant.dropout,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )


def ensure_packing_safe(model: PreTrainedModel) -> None:
    """Switch to a varlen attention for packing, or refuse: SDPA/eager would attend across packed examples."""
    current = model.config._attn_implementation
    if current in VARLEN_ATTENTION:
        return
    try:
        model.set_attn_implementation(VARLEN_ATTENTION[0])
    except (ImportError, ValueError) as e:
        raise ValueError(
            f"train.packing: true needs a varlen attention ({' or '.join(VARLEN_ATTENTION)}) so that packed "
            f"examples do not attend to each other; the model uses {current!r} and {VARLEN_ATTENTION[0]} "
            f"is unavailable here ({str(e).splitlines()[0]}). Set train.packing: false."
        ) from None
    log.info("packing: attention switched from %s to %s", current, model.config._attn_implementation)
