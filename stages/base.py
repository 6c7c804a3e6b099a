"""base: the base model + tokenizer (embedded tiny Qwen3, a local folder or a Hub id) into models/base/."""

from __future__ import annotations

import logging
from pathlib import Path

from bmw.base.materialise import materialise_base
from bmw.gpus import lease_gpu
from bmw.params import load_params

BASE_DIR = Path("models/base")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    lease_gpu()  # one GPU of BMW_GPUS when experiments run in parallel (bmw/gpus.py)
    materialise_base(BASE_DIR, params.base, params.seed)
    logging.getLogger("base").info("wrote %s (%s)", BASE_DIR, params.base.name)


if __name__ == "__main__":
    main()
