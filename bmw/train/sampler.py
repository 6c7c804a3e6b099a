"""Length-grouped batches in an order that depends on the seed and the epoch only, so that a resumed run sees it.

transformers' LengthGroupedSampler draws its permutation from the global torch RNG when an epoch starts. A run killed
mid-epoch and resumed from a checkpoint starts that epoch with another RNG state, draws another order, and skips the
first batches of an order it never trained on: its losses and weights differ from an uninterrupted run's.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Batches of like-length rows; the permutation comes from a generator seeded with `seed + epoch`.

    accelerate's data loader calls `set_epoch` before each epoch (also under DDP, where every process must draw the
    same order and take its share of the batches)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
