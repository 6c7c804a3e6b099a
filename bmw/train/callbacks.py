"""Trainer callbacks: dvclive curves keyed by optimizer step, and progress lines on stderr."""

from __future__ import annotations

import logging

from dvclive import Live
from transformers import TrainerCallback
from transformers.integrations import DVCLiveCallback

log = logging.getLogger(__name__)


def _plottable(logs: dict) -> dict:
    """Drop wall-clock rates (they would make the curves differ between identical runs) and the step key."""
    return {k: v for k, v in logs.items() if k != "step" and "runtime" not in k and "per_second" not in k}


class StepDVCLive(DVCLiveCallback):
    """DVCLive logging whose step is the optimizer step (the stock callback counts log calls).

    A resumed run starts a fresh `Live` (a killed `dvc repro` deletes the stage's outputs), so the history stored
    in the checkpoint is replayed first: the curves then cover the whole run with no step twice.
    """

    def __init__(self, live: Live):
        super().__init__(live=live)

    def setup(self, args, state, model):
        # The stock callback logs every TrainingArguments field (paths, devices) as params: the run's params are
        # params.yaml's, which DVC already tracks.
        self._initialized = True

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        for entry in state.log_history:  # non-empty only when resuming from a checkpoint
            self._log_at(args, state, control, entry["step"], entry)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        self._log_at(args, state, control, state.global_step, logs or {})

    def _log_at(self, args, state, control, step: int, logs: dict) -> None:
        self.live.step = step
        super().on_log(args, state, control, logs=_plottable(logs))


class ProgressLog(TrainerCallback):
    """Log lines for the start (and resume point) and each evaluation; the Trainer's tqdm bar shows the steps."""

    def on_train_begin(self, args, state, control, **kwargs):
        log.info("training %d steps (%.2f epochs), starting at step %d", state.max_steps, args.num_train_epochs,
                 state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "eval_loss" in logs:
            log.info("step %d/%d epoch %.2f eval_loss %.4f (best %.4f)", state.global_step, state.max_steps,
                     state.epoch or 0.0, logs["eval_loss"], min(logs["eval_loss"], state.best_metric or float("inf")))
