"""Several GPUs: a training command relaunches itself under `accelerate launch`, one process per GPU.

`train.distributed` picks the strategy (ddp: each GPU holds the model, gradients are all-reduced; fsdp: weights,
gradients and optimizer states are sharded, see `config.distributed_args`); the launch itself is the same for both.
"""

from __future__ import annotations

import logging
import os
import sys

from bmw.params import TrainParams

log = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a launched job, or a plain process: the one that writes outputs and metrics."""
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(train: TrainParams, module_argv: list[str], visible_gpus: int) -> list[str] | None:
    """`accelerate launch` of `python -m <module_argv>` on `train.gpus` (0: all visible) GPUs; None: run here."""
    if train.distributed == "none" or "LOCAL_RANK" in os.environ:  # not asked for, or already launched
        return None
    processes = train.gpus or visible_gpus
    if processes > visible_gpus:
        raise ValueError(f"train.gpus: {processes} processes asked for, {visible_gpus} GPU(s) visible")
    if processes < 2:
        log.warning("train.distributed: %s needs 2 or more GPUs, %d visible: training in this process",
                    train.distributed, visible_gpus)
        return None
    # precision comes from the training arguments (bf16) and compilation is off, as in a single-process run
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
            "--num_machines", "1", "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", *module_argv]

