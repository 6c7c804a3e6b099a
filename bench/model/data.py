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


def synthetic_dataset(count: int, max_length: int, low: int, high: int, seed: int,
                      successors: int | None = None) -> Dataset:
    """`count` rows of `input_ids` from [low, high) (ordinary tokens, no specials): drawn uniformly, or with
    `successors`, a walk through a random bigram table where each token has that many next tokens. The walk leaves
    something to learn for a loss curve (down towards ln(successors)); uniform tokens nothing after the first steps
    (the loss stays at ln(high - low))."""
    if not 0 <= low < high:
        raise ValueError(f"token id range [{low}, {high}) is empty")
    rng = random.Random(seed + 1)
    lengths = document_lengths(count, max_length, seed)
    if successors is None:
        return Dataset.from_dict({"input_ids": [[rng.randrange(low, high) for _ in range(n)] for n in lengths]})
    table = {t: [rng.randrange(low, high) for _ in range(successors)] for t in range(low, high)}
    rows = []
    for n in lengths:
        row = [rng.randrange(low, high)]
        while len(row) < n:
            row.append(rng.choice(table[row[-1]]))
        rows.append(row)
    return Dataset.from_dict({"input_ids": rows})
