"""Which base a folder holds: recorded by a variant rebuilt from a base (and by a run's checkpoint fingerprint), and
compared when the variant is loaded, so that an adapter is never put onto another base than it was trained on.

PEFT loads an adapter onto any model with modules of the adapted names and shapes, without a word: a LoRA trained
on a base seeded otherwise, or on the base of another experiment with the same architecture, would load silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SLICES = 64  # a weights file is sampled in this many slices of SLICE bytes: 4 MiB read per file, whatever its size
SLICE = 1 << 16


def file_digest(path: Path) -> str:
    """SHA-256 of a file up to SLICES * SLICE bytes, else of SLICES slices spread evenly over it, first and last
    included: hashing Qwen3-8B's 16 GB whole would take ~14 s at every load. Other weights (another seed, a fine-tune)
    differ all over the file; a change confined to a few bytes between the slices goes unseen."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if size <= SLICES * SLICE:
            digest.update(f.read())
        else:
            for i in range(SLICES):
                f.seek(i * (size - SLICE) // (SLICES - 1))
                digest.update(f.read(SLICE))
    return digest.hexdigest()


def base_identity(base_dir: str | Path) -> dict:
    """Every file of the base folder (config, weights, tokenizer, a random base's marker, whose seed makes its
    weights) by size and digest."""
    return {"files": {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
                      for p in sorted(Path(base_dir).iterdir()) if p.is_file()}}


def identity_differences(recorded: dict, found: dict) -> list[str]:
    """What tells the base `found` from the one `recorded`, file by file, in words; [] for the same base."""
    was, now = recorded["files"], found["files"]
    differences = []
    for name in sorted(was.keys() | now.keys()):
        if name not in now:
            differences.append(f"{name} missing")
        elif name not in was:
            differences.append(f"{name} not in the recorded base")
        elif now[name]["bytes"] != was[name]["bytes"]:
            differences.append(f"{name} is {now[name]['bytes']} bytes, the recorded base's {was[name]['bytes']}")
        elif now[name]["sha256"] != was[name]["sha256"]:
            differences.append(f"{name} differs")
    return differences
