"""One supervised fine-tuning run with TRL's SFTTrainer: best checkpoint by validation loss, resumable."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerState,
)
from transformers.integrations.liger import apply_liger_kernel
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTTrainer

from bmw.models.thinking import empty_think_ids
from bmw.train.checkpoints import KeepOnlyWhatResumeNeeds, resume_point
from bmw.train.compile import compile_decoder_layers
from bmw.train.config import RunConfig, ensure_packing_safe
from bmw.train.data import without_empty_think
from bmw.train.fast_lora import set_adapter_input_casts, set_fused_updates
from bmw.train.fsdp_head import CompleteHeadForward
from bmw.train.launch import is_main_process
from bmw.train.sampler import SeededLengthGroupedSampler
from bmw.train.summary import run_summary
from bmw.train.weight_sums import changed, trainable_tensors, weight_sums

log = logging.getLogger(__name__)


def _live(metrics_dir: Path):
    # dvclive (and the dvc it pulls in) is imported only where curves are written, so that build_trainer also
    # runs where dvc is not installed (bmw bench on a GPU machine)
    from dvclive import Live

    return Live(dir=str(metrics_dir), dvcyaml=None, save_dvc_exp=False, report=None)


class SeededOrderSFTTrainer(SFTTrainer):
    """SFTTrainer whose length-grouped batch order is a function of the data seed and the epoch: a run resumed
    mid-epoch skips the batches it trained on and goes on in the same order (bmw/train/sampler.py)."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if not isinstance(sampler, LengthGroupedSampler):
            return sampler
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)


class LogitsLossSFTTrainer(SeededOrderSFTTrainer):
    """SFTTrainer whose loss is transformers' cross-entropy over the model's own logits, for hosts without Triton.

    TRL computes the loss with a chunked LM head that never holds the whole logits; where Triton is missing (a CPU)
    it folds every [4096 x 32768] logits tile with a dozen whole-tile torch passes. On SmolLM2, 8 x 512 tokens,
    bf16 autocast, 2 cores: 33 s per training step there, 21 s here, the same losses to 3 decimals
    (`bmw bench model --shape smollm2 --ablate-chunked-loss`). The token accuracy is logged as TRL logs it; the
    logits' entropy is not."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs["use_cache"] = False
        loss, outputs = Trainer.compute_loss(self, model, inputs, return_outputs=True,
                                             num_items_in_batch=num_items_in_batch)
        with torch.no_grad():
            labels = inputs["labels"][:, 1:]
            scored = labels != -100
            hits = (outputs.logits[:, :-1].argmax(-1) == labels) & scored
            mode = "train" if model.training else "eval"
            self._metrics[mode]["mean_token_accuracy"].append(hits.sum().item() / max(scored.sum().item(), 1))
        return (loss, outputs) if return_outputs else loss


def build_trainer(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: RunConfig,
    train_ds: Dataset,
    eval_ds: Dataset,
    callbacks: Sequence[TrainerCallback] = (),
) -> SFTTrainer:
    """TRL's SFTTrainer for `config` (config.logits_loss: with the loss from the logits); the LoRA adapter is
    added unless `model` already carries one; config.mask_empty_think: the empty think block out of the labels;
    config.fp8: the decoder's linears swapped for FP8 ones (bmw.train.float8); config.compile: the decoder layers
    compiled (bmw.train.compile)."""
    if config.args.packing:
        ensure_packing_safe(model, config.packed_attention)
    stopping = [EarlyStoppingCallback(early_stopping_patience=config.patience)] if config.patience else []
    trainer_class = LogitsLossSFTTrainer if config.logits_loss else SeededOrderSFTTrainer
    trainer = trainer_class(
        model=model,
        args=config.args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=None if isinstance(model, PeftModel) else config.peft,
        callbacks=[*callbacks, *stopping],
    )
    if config.mask_empty_think:
        _mask_empty_think(trainer, tokenizer)
    if trainer.is_fsdp_enabled:
        trainer.add_callback(CompleteHeadForward())
    if isinstance(trainer.model, PeftModel):
        set_fused_updates(trainer.model, enabled=True)
        if trainer.args.bf16:
            set_adapter_input_casts(trainer.model, enabled=False)
    if config.fp8:
        # after PEFT added its layers (their base layers are what LoRA converts), before the Trainer wraps the model
        # (DDP, FSDP) in train(); torchao is imported only here: it takes a second and warns on CPU builds
        from bmw.train.float8 import convert_linears

        convert_linears(trainer.model, config.fp8, cast_frozen=not trainer.is_fsdp_enabled)
    if config.compile:
        # last: the adapters, the fused updates and the FP8 linears are what the layers compile with
        log.info("train.compile: %d decoder layers compiled", compile_decoder_layers(trainer.model))
    return trainer


def _mask_empty_think(trainer: SFTTrainer, tokenizer: PreTrainedTokenizerBase) -> None:
    # on the rows TRL tokenised, truncated and packed: the mask then reaches every collator and loss path
    pattern = empty_think_ids(tokenizer)
    if pattern is None:
        log.info("train.mask_empty_think: the chat template writes no think block; nothing to mask")
        return
    trainer.train_dataset = without_empty_think(trainer.train_dataset, pattern)
    trainer.eval_dataset = without_empty_think(trainer.eval_dataset, pattern)


def fit(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: RunConfig,
    train_ds: Dataset,
    eval_ds: Dataset,
    *,
    metrics_dir: Path,
    fingerprint: str,
) -> tuple[PreTrainedModel | PeftModel, dict, dict | None]:
    """Train `model`; return the best-by-eval-loss model, the run's figures (in the main process with
    `changed_tensors`: how many trainable tensors the run changed) and, under FSDP, its full state dict.

    Checkpoints go to `config.args.output_dir` at every evaluation; a run with the same `fingerprint` continues
    from the last complete one. Curves go to `metrics_dir` through dvclive.
    """
    from bmw.train.callbacks import (  # imports dvclive: see _live
        ProgressLog,
        StepDVCLive,
    )

    # the main process clears another run's checkpoints and writes the fingerprint before the others look:
    # processes doing both at once removed each other's files
    with config.args.main_process_first(desc="checkpoint folder"):
        resume = resume_point(Path(config.args.output_dir), fingerprint)
    start = TrainerState.load_from_json(str(resume / "trainer_state.json")) if resume else None
    # in a job on several GPUs every process trains; only rank 0 writes the curves
    curves = [StepDVCLive(_live(metrics_dir))] if is_main_process() else []
    trainer = build_trainer(model, tokenizer, config, train_ds, eval_ds,
                            callbacks=[*curves, ProgressLog(), KeepOnlyWhatResumeNeeds()])
    before = weight_sums(trainable_tensors(trainer.model))  # LoRA's adapter included: the trainer has added it
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    summary = run_summary(trainer.state, start, time.perf_counter() - began)
    state_dict = gathered_state_dict(trainer, config.dtype)
    if is_main_process():  # under FSDP the whole weights are rank 0's gathered state dict
        after = weight_sums((k, v) for k, v in state_dict.items() if k in before) if state_dict is not None \
            else weight_sums(trainable_tensors(trainer.model))
        summary["changed_tensors"] = len(changed(before, after))
        log.info(
            "trained %d steps in %.1fs, %d of %d trainable tensors changed; best eval_loss %s at step %s",
            summary["steps"], summary["train_time_s"], summary["changed_tensors"], len(before),
            summary["best_eval_loss"], summary["best_step"],
        )
    return trainer.model, summary, state_dict


def gathered_state_dict(trainer: SFTTrainer, dtype: str) -> dict | None:
    """Under FSDP the weights are sharded over the processes: gather them (every process must call this) for
    rank 0 to save, in the variant's `dtype` (FSDP trains fp32 master weights of a bf16 model: twice the bytes).
    None: the model holds its whole weights."""
    if not trainer.is_fsdp_enabled:
        return None
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    target = getattr(torch, dtype)
    return {k: v.to(target) if v.is_floating_point() else v for k, v in state_dict.items()}


def validation_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig, eval_ds: Dataset, metrics_dir: Path
) -> float:
    """An untrained model's validation loss, logged as step 0 of its eval curve (the baseline's one point), computed
    as the trained variants' are: with Liger's kernels where they train with them (on a CUDA GPU)."""
    trainer = build_trainer(model, tokenizer, config, eval_ds, eval_ds)
    if trainer.args.use_liger_kernel:
        # Trainer.train patches the model with them, evaluate alone does not: at Qwen3-8B's shape the baseline
        # scored 12.66882 against 12.66827 for a variant whose weights were the same
        apply_liger_kernel(trainer.model, trainer.args.liger_kernel_config)
    loss = float(trainer.evaluate()["eval_loss"])
    live = _live(metrics_dir)
    live.log_metric("eval/loss", loss)
    live.end()
    return loss
