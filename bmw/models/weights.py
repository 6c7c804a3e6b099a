"""The safetensors weights of a model folder, read from their headers: no tensor is loaded.

A safetensors file is an 8-byte header length, a JSON header naming each tensor with its byte range, then the
data; a file cut short ends before the last range. A sharded folder lists its shards in
`model.safetensors.index.json`. Used to refuse folders that `from_pretrained` would load without a word (a
missing shard's layers initialised at random, a stray shard ignored, weights for more or fewer layers than the
config says) and to tell a complete checkpoint from one a kill cut off.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

SINGLE = ("model.safetensors", "adapter_model.safetensors")
INDEX = "model.safetensors.index.json"
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class WeightsError(ValueError):
    """A model folder whose weights are missing, cut off or inconsistent; the message says which file and how."""


def _header(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as e:
        raise WeightsError(f"{path}: not a readable safetensors file ({type(e).__name__})") from None
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + length + end:
        raise WeightsError(f"{path}: cut off ({path.stat().st_size} bytes, its header needs {8 + length + end})")
    return header


def tensor_names(folder: str | Path) -> list[str]:
    """The names of every tensor in the folder's weights; WeightsError if a file is missing, cut off or stray."""
    folder = Path(folder)
    index = folder / INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise WeightsError(f"{index}: not a shard index ({type(e).__name__})") from None
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise WeightsError(f"{folder}: shard(s) {', '.join(missing)} listed in {INDEX} are missing")
        stray = sorted(p.name for p in folder.glob("model-*.safetensors") if p.name not in shards)
        if stray:
            raise WeightsError(f"{folder}: shard(s) {', '.join(stray)} are not in {INDEX} (a mix of two saves?)")
        files = [folder / s for s in shards]
    else:
        files = [folder / name for name in SINGLE if (folder / name).is_file()]
        if not files:
            raise WeightsError(f"{folder}: no weights ({', '.join(SINGLE)} or {INDEX})")
    return [name for path in files for name in _header(path) if name != "__metadata__"]


def layer_indices(names: list[str]) -> set[int]:
    """The decoder layers the weights hold, by their `layers.<i>.` index."""
    return {int(m.group(1)) for name in names if (m := _LAYER.search(name))}
