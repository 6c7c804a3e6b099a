"""Read the chat-formatted splits written by the format stage into `datasets.Dataset`s for TRL; leave the empty
think block out of the labels of the rows TRL tokenised."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

from bmw.models.thinking import mask_empty_think

ROLES = {"system", "user", "assistant"}


def _check_messages(messages: object, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: messages[{i}] must be {{'role': one of {sorted(ROLES)}, 'content': str}}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant message to train on")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def load_chat_split(path: Path) -> Dataset:
    """One `{"messages": [...]}` row per line of `path`, in file order; a malformed line fails naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run the format stage first (dvc repro format)")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object")
            rows.append({"messages": _check_messages(record.get("messages"), where)})
    if not rows:
        raise ValueError(f"{path}: no examples")
    return Dataset.from_list(rows)


def _masked_row(row: dict, pattern: list[int]) -> dict:
    return {"labels": mask_empty_think(row["input_ids"], row["labels"], pattern)}


def without_empty_think(dataset: Dataset, pattern: list[int]) -> Dataset:
    """TRL's tokenised rows (packed or not) with the empty think block's tokens (`pattern`) out of the loss: the
    labels every loss path (TRL's chunked LM head, Liger's kernels, the logits) reads."""
    return dataset.map(_masked_row, fn_kwargs={"pattern": pattern}, desc="Masking the empty think block")
