"""eval@<variant>: perplexity, generations, semantic entropy, multiple-choice QA and QA log-likelihood of a variant.

`python -m stages.eval lora` reads models/variants/lora/ and data/processed/, writes metrics/eval/lora/.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bmw.eval.evaluate import evaluate_variant
from bmw.params import load_params

DATA_DIR = Path("data/processed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.eval")
    parser.add_argument("variant", help="a key of `variants` in params.yaml")
    variant = parser.parse_args(argv).variant
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    evaluate_variant(variant, params, Path("models/variants") / variant, DATA_DIR, Path("metrics/eval") / variant)


if __name__ == "__main__":
    main()
