"""Whether a run changed the weights: per trainable tensor, the float64 sum of its elements before and after.

A run can take its optimizer steps and change nothing (a learning rate of 0 throughout: the only step of a short run
is all warm-up); its variant must not be reported as trained. The sums are reduced on the tensors' device, a slice
at a time: no copy of the weights, one number per tensor.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

SLICE = 1 << 24  # elements summed at once: a float64 temporary of at most 128 MB


def trainable_tensors(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    return ((name, p) for name, p in model.named_parameters() if p.requires_grad)


def weight_sums(tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, float]:
    sums = {}
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1)
        sums[name] = float(torch.stack([part.sum(dtype=torch.float64) for part in flat.split(SLICE)]).sum())
    return sums


def changed(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """The tensors of `before` whose sum moved; one missing from `after` counts as changed (nothing proves it not)."""
    return [name for name, value in before.items() if after.get(name) != value]
