"""A random base (`base.name: random:<shape>`): a base folder with no weights, whose weights are built at load.

The folder holds the shape's `config.json`, a tokenizer and a marker `random_weights.json` (`shape`, `seed`, `dtype`);
`build_random_model` makes the weights on the device from that seed, in that dtype, so every stage that loads the base
gets the same ones and the 16 GB of Qwen3-8B never exist on disk or on the host. The same weights, that is, on the
same kind of device: a GPU draws other random numbers than a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from bmw.io import write_json

MARKER = "random_weights.json"
MARKER_KEYS = ("shape", "seed", "dtype")


def write_marker(folder: Path, shape: str, seed: int, dtype: str) -> None:
    write_json(Path(folder) / MARKER, {"shape": shape, "seed": seed, "dtype": dtype})


def read_marker(folder: str | Path) -> dict | None:
    """The marker of a random base; None for a folder that holds its weights."""
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    marker = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in MARKER_KEYS if k not in marker]
    if missing:
        raise ValueError(f"{path}: not a random-base marker, missing {', '.join(missing)}; run the base stage again")
    return marker


def build_random_model(folder: str | Path, marker: dict, device: torch.device) -> PreTrainedModel:
    """The folder's architecture with weights drawn from the marker's seed, made directly on `device` in the marker's
    dtype (no float32 copy, nothing on the host); the global random state is left as it was."""
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))), torch.device(device):
        torch.manual_seed(marker["seed"])
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, marker["dtype"]))
    return model.eval()
