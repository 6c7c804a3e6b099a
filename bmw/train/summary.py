"""The numbers a training run reports in `metrics/train/<variant>/run.json` (the best validation loss is also the DVC metric)."""

from __future__ import annotations

from torch import nn
from transformers import TrainerState


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable); LoRA adapter weights count as trainable but not towards the architecture's total."""
    total = trainable = 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            trainable += p.numel()
        if "lora_" not in name:
            total += p.numel()
    return total, trainable


def run_summary(state: TrainerState, start: TrainerState | None, train_time_s: float) -> dict:
    """Figures of the whole run (steps, epochs, tokens, losses) and rates of this process's share of it."""
    start_step = start.global_step if start else 0
    start_epoch = (start.epoch or 0.0) if start else 0.0
    start_tokens = start.num_input_tokens_seen if start else 0
    epochs = state.epoch or 0.0
    train_losses = [e["loss"] for e in state.log_history if "loss" in e]
    session_epochs = epochs - start_epoch
    return {
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs_run": round(epochs, 4),
        "early_stopped": state.global_step < state.max_steps,
        "resumed_from_step": start_step,
        "best_eval_loss": state.best_metric,
        "best_step": state.best_global_step,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "tokens_seen": state.num_input_tokens_seen,
        "train_time_s": round(train_time_s, 3),
        "time_per_epoch_s": round(train_time_s / session_epochs, 3) if session_epochs > 0 else None,
        "tokens_per_second": (
            round((state.num_input_tokens_seen - start_tokens) / train_time_s, 1) if train_time_s > 0 else None
        ),
        "steady_tokens_per_second": steady_tokens_per_second(state, start_step),
    }


def steady_tokens_per_second(state: TrainerState, start_step: int = 0) -> float | None:
    """Tokens per second from the end of this session's first optimizer step to the end of its last: the rate
    `bmw bench` measures, without the first step's kernel compilation and the final checkpoint save, which on
    Qwen3-8B's shape took 73 s and ~60 s of a 244 s full fine-tuning run (docs/realsize.md). Evaluations between
    the two steps are counted in. None with fewer than two steps logged."""
    logs = [e for e in state.log_history if "loss" in e and "train_runtime" in e and e["step"] > start_step]
    if len(logs) < 2:
        return None
    first, last = logs[0], logs[-1]
    seconds = last["train_runtime"] - first["train_runtime"]
    return round((last["num_input_tokens_seen"] - first["num_input_tokens_seen"]) / seconds, 1) if seconds > 0 else None


def untrained_summary(validation_loss: float) -> dict:
    return {
        "steps": 0, "max_steps": 0, "epochs_run": 0.0, "early_stopped": False, "resumed_from_step": 0,
        "best_eval_loss": validation_loss, "best_step": 0, "final_train_loss": None, "tokens_seen": 0,
        "train_time_s": 0.0, "time_per_epoch_s": None, "tokens_per_second": None, "steady_tokens_per_second": None,
        "changed_tensors": 0,
    }
