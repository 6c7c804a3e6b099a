"""Synthetic pre-tokenized training data with the length spread of chat-formatted press releases."""

from __future__ import annotations

import random

from datasets import Dataset


def document_lengths(count: int, max_length: int, seed: int) -> list[int]:
    """Log-normal lengths around max_length/4, clipped to [32, max_length]: many short releases, a tail of long
    ones, which is what padding wastes compute on and packing recovers."""
    rng = random.Random(seed)
    median = max_length / 4
    return [max(32, min(max_length, round(rng.lognormvariate(0, 0.8) * median))) for _ in range(count)]


def synthetic_dataset(count: int, max_length: int, low: int, high: int, seed: int) -> Dataset:
    """`count` rows of `input_ids` drawn uniformly from [low, high) (ordinary tokens, no specials)."""
    if not 0 <= low < high:
        raise ValueError(f"token id range [{low}, {high}) is empty")
    rng = random.Random(seed + 1)
    lengths = document_lengths(count, max_length, seed)
    return Dataset.from_dict({"input_ids": [[rng.randrange(low, high) for _ in range(n)] for n in lengths]})
