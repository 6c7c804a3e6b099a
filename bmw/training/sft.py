"""One supervised fine-tuning run with TRL's SFTTrainer: best checkpoint by validation loss, resumable."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

from datasets import Dataset
from peft import PeftModel
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerState,
)
from trl import SFTTrainer

from bmw.params import TrainParams, VariantParams
from bmw.training.checkpoints import resume_point
from bmw.training.config import ensure_packing_safe, lora_config, packed_attention, sft_config
from bmw.training.summary import run_summary

log = logging.getLogger(__name__)


def _live(metrics_dir: Path):
    # dvclive (and the dvc it pulls in) is imported only where curves are written, so that build_trainer also
    # runs where dvc is not installed (bmw bench on a GPU machine)
    from dvclive import Live

    return Live(dir=str(metrics_dir), dvcyaml=None, save_dvc_exp=False, report=None)


def build_trainer(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    variant: VariantParams,
    train: TrainParams,
    seed: int,
    dtype: str,
    train_ds: Dataset,
    eval_ds: Dataset,
    checkpoint_dir: Path,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    """The SFTTrainer of a variant: LoRA adapter on all linear layers unless `model` already carries one."""
    if train.packing:
        ensure_packing_safe(model, packed_attention(train))
    needs_adapter = variant.method == "lora" and not isinstance(model, PeftModel)
    return SFTTrainer(
        model=model,
        args=sft_config(train, variant, seed, checkpoint_dir, dtype),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(variant) if needs_adapter else None,
        callbacks=[*callbacks, EarlyStoppingCallback(early_stopping_patience=train.early_stopping_patience)],
    )


def fit(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    variant: VariantParams,
    train: TrainParams,
    seed: int,
    dtype: str,
    train_ds: Dataset,
    eval_ds: Dataset,
    checkpoint_dir: Path,
    metrics_dir: Path,
    fingerprint: str,
    log_params: dict,
) -> tuple[PreTrainedModel | PeftModel, dict]:
    """Train `model` and return the best-by-eval-loss model and the run's figures.

    Checkpoints go to `checkpoint_dir` at every evaluation; a run with the same `fingerprint` continues from the
    last complete one. Curves go to `metrics_dir` through dvclive.
    """
    from bmw.training.callbacks import ProgressLog, StepDVCLive  # imports dvclive: see _live

    resume = resume_point(checkpoint_dir, fingerprint)
    start = TrainerState.load_from_json(str(resume / "trainer_state.json")) if resume else None
    live = _live(metrics_dir)
    trainer = build_trainer(
        model, tokenizer, variant=variant, train=train, seed=seed, dtype=dtype, train_ds=train_ds, eval_ds=eval_ds,
        checkpoint_dir=checkpoint_dir, callbacks=[StepDVCLive(live, log_params), ProgressLog()],
    )
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    summary = run_summary(trainer.state, start, time.perf_counter() - began)
    log.info(
        "trained %d steps in %.1fs; best eval_loss %s at step %s",
        summary["steps"], summary["train_time_s"], summary["best_eval_loss"], summary["best_step"],
    )
    return trainer.model, summary


def validation_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    variant: VariantParams,
    train: TrainParams,
    seed: int,
    dtype: str,
    eval_ds: Dataset,
    checkpoint_dir: Path,
    metrics_dir: Path,
) -> float:
    """An untrained model's validation loss, logged as step 0 of its eval curve (the baseline's one point)."""
    trainer = build_trainer(model, tokenizer, variant=variant, train=train, seed=seed, dtype=dtype,
                            train_ds=eval_ds, eval_ds=eval_ds, checkpoint_dir=checkpoint_dir)
    loss = float(trainer.evaluate()["eval_loss"])
    live = _live(metrics_dir)
    live.log_metric("eval/loss", loss)
    live.end()
    return loss
