"""train@<variant>: `python -m stages.train lora` -> models/variants/lora/, metrics/train/lora/.

Checkpoints go to models/checkpoints/lora/ (not a DVC output: a killed `dvc repro` resumes from them).
With `train.distributed: ddp|fsdp` on a multi-GPU host the stage reruns itself under `accelerate launch`.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from pathlib import Path

import torch

from bmw.gpus import lease_gpu
from bmw.models.base import check_against_base
from bmw.params import load_params
from bmw.train.launch import launch_command
from bmw.train.variant import train_variant


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.train")
    parser.add_argument("variant", help="a key of `variants` in params.yaml")
    name = parser.parse_args(argv).variant
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    lease_gpu()  # one GPU of BMW_GPUS when experiments run in parallel (bmw/gpus.py)
    variant = params.variant(name)  # an unknown variant fails here, naming the defined ones
    check_against_base(params)  # before any model is loaded: layer settings against its depth, dtype
    if variant.method != "none":  # an untrained variant runs one evaluation pass, in this process
        launch = launch_command(params.train, ["stages.train", name], torch.cuda.device_count())
        if launch:
            raise SystemExit(subprocess.run(launch).returncode)
    train_variant(
        name,
        params,
        out_dir=Path("models/variants") / name,
        metrics_dir=Path("metrics/train") / name,
        checkpoint_dir=Path("models/checkpoints") / name,
    )


if __name__ == "__main__":
    main()
