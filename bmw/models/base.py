"""The base model folder `models/base/`: written once by the base stage, read by prune, train and eval."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

BASE_DIR = Path("models/base")


def load_base(
    path: str | Path, dtype: str | torch.dtype = "float32"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (eval mode) and tokenizer from a materialised base folder; never touches a hub."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; run the base stage (python -m stages.base) first")
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    return model.eval(), load_base_tokenizer(path)


def load_base_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    path = Path(path)
    if not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{path}: no tokenizer; run the base stage (python -m stages.base) first")
    return AutoTokenizer.from_pretrained(path, local_files_only=True)
