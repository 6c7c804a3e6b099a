"""eval@<variant>: perplexity, generations, semantic entropy, multiple-choice QA and QA log-likelihood of a variant.

`python -m stages.eval lora` reads models/variants/lora/ and data/processed/, writes metrics/eval/lora/.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from bmw.eval.evaluate import evaluate_variant
from bmw.eval.lm_eval_tasks import task_manager
from bmw.gpus import lease_gpu
from bmw.io import atomic_dir
from bmw.params import check_host, load_params

DATA_DIR = Path("data/processed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.eval")
    parser.add_argument("variant", help="a key of `variants` in params.yaml")
    variant = parser.parse_args(argv).variant
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    lease_gpu()  # one GPU of BMW_GPUS when experiments run in parallel (bmw/gpus.py)
    params.variant(variant)  # an unknown variant fails here, naming the defined ones
    check_host(params, torch.cuda.is_available())  # before any model is loaded (the plan is in the variant already)
    if params.eval.lm_eval_tasks:
        task_manager(tuple(params.eval.lm_eval_tasks), params.eval.lm_eval_include)
    metrics_dir = Path("metrics/eval") / variant
    with atomic_dir(metrics_dir, keep=(".gitignore",)) as metrics:  # appears complete, or not at all
        evaluate_variant(variant, params, Path("models/variants") / variant, DATA_DIR, metrics)


if __name__ == "__main__":
    main()
