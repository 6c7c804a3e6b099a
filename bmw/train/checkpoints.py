"""The checkpoint folder of one variant: resumable across killed runs, never reused by a different run."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

from bmw.io import sha256_bytes, write_json
from bmw.models.plan import tensor_sha256
from bmw.models.weights import tensor_names

log = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def run_fingerprint(parts: dict) -> str:
    """A hash of everything that defines a run (params, base, plan, data): checkpoints resume only into the same run."""
    def encode(value):  # a plan's tensors by their content, not their abbreviated repr
        return tensor_sha256(value) if isinstance(value, torch.Tensor) else str(value)

    return sha256_bytes(json.dumps(parts, sort_keys=True, default=encode).encode("utf-8"))


def _complete(path: Path) -> bool:
    """Trainer writes trainer_state.json after the weights, optimizer and RNG state, but not atomically: a save is
    complete when that file parses and the weights are whole (no shard missing or cut off)."""
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        tensor_names(path)
    except (OSError, ValueError):  # WeightsError is a ValueError
        return False
    return True


def resume_point(checkpoint_dir: Path, fingerprint: str) -> Path | None:
    """The last complete checkpoint of this run, or None; checkpoints of another run or cut-off saves are removed."""
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / FINGERPRINT
    stored = json.loads(marker.read_text(encoding="utf-8"))["fingerprint"] if marker.exists() else None
    if stored != fingerprint:
        if checkpoint_dir.exists():
            log.info("%s holds checkpoints of a different run configuration: discarding them", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
        write_json(marker, {"fingerprint": fingerprint})
        return None
    found = _checkpoints(checkpoint_dir)
    complete = [(step, p) for step, p in found if _complete(p)]
    for step, p in found:
        if not _complete(p):
            log.info("removing incomplete checkpoint %s", p)
            shutil.rmtree(p)
    if not complete:
        return None
    step, path = complete[-1]
    log.info("resuming from %s (step %d)", path, step)
    return path


def _checkpoints(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), p) for p in Path(checkpoint_dir).iterdir()
                  if p.is_dir() and (m := _CHECKPOINT.match(p.name)))


class KeepOnlyWhatResumeNeeds(TrainerCallback):
    """After each save, older checkpoints keep their weights and trainer state only, and the last step's checkpoint
    is written without the optimizer, scheduler and RNG states.

    A resume reads the newest complete checkpoint whole (optimizer, scheduler, RNG states); an older one is kept only
    because it may be the best by validation loss, whose weights load at the end. An 8B model's AdamW states are twice
    its weights: at Qwen3-8B's size this frees ~33 GB per older checkpoint. The newest is complete when this runs
    (Trainer calls on_save after writing it), so a kill during the next save still finds it whole. A resume from the
    last step's checkpoint has no step left to take: its states were 33 GB written (~40 s) and deleted by the stage
    right after, the disk peak of full fine-tuning on the real-size run (docs/realsize.md).
    """

    RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "pytorch_model_fsdp*", "optimizer_*")

    def on_step_end(self, args, state, control, **kwargs):
        # Trainer saves after on_step_end; FSDP writes its sharded states by another path, left as it is
        if state.global_step >= state.max_steps and not args.fsdp:
            args.save_only_model = True

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        for _, path in _checkpoints(args.output_dir)[:-1]:
            for pattern in self.RESUME_ONLY:
                for file in path.glob(pattern):
                    shutil.rmtree(file) if file.is_dir() else file.unlink()
