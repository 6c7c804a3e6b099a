"""Read the chat-formatted splits written by the format stage into `datasets.Dataset`s for TRL."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset

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
