"""Calibration text for layer scores and LaCo: the first training documents, chat-rendered and tokenized."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from bmw.io import read_jsonl

log = logging.getLogger(__name__)


def calibration_sequences(
    train_path: str | Path, tokenizer: PreTrainedTokenizerBase, docs: int, tokens: int, max_length: int
) -> list[torch.Tensor]:
    """One id tensor per document (no attention across documents), `tokens` in all, each at most `max_length`."""
    rows = read_jsonl(train_path)[:docs]
    if not rows:
        raise ValueError(f"{train_path}: no training documents to calibrate on")
    sequences: list[torch.Tensor] = []
    budget = tokens
    for row in rows:
        if budget <= 0:
            break
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: min(budget, max_length)]
        sequences.append(torch.tensor([ids], dtype=torch.long))
        budget -= len(ids)
    log.info("calibration: %d documents, %d tokens", len(sequences), tokens - budget)
    return sequences
