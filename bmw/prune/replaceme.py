"""ReplaceMe (arXiv 2505.02819), training-free: a block of consecutive layers replaced by one linear map.

With layers s..s+n-1 cut, layer s-1 must hand on what the block would have. Layer s-1 outputs X + M, X its residual
stream after attention and M its MLP output; the block's output is Y. One hidden-size map T, folded into layer s-1's
MLP down projection (`surgery.fold_linear_map`), makes it output X + M T, and T minimises ||X + M T - Y||^2 over the
calibration tokens: least squares, the paper's L2 form (its cosine form needs an optimiser). The saved model
is a plain model of the base's architecture, n layers shallower. The block is the n layers whose input and output
are closest in angular distance (as the paper chooses it), or `model.replaceme.start`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedModel

from bmw.models.surgery import decoder_layers
from bmw.prune.scores import LayerStats

# Tikhonov damping of M^T M, relative to its mean diagonal: keeps the solve defined where calibration text leaves
# directions of the MLP output unused, and is far below the data's scale
RIDGE = 1e-6


def block_start(stats: LayerStats, count: int) -> int:
    """The start s >= 1 of the `count`-layer block that changes the hidden state least (ties: the lower index)."""
    distance = stats.angular_distance(count)  # distance[l]: layers l..l+count-1
    return min(range(1, len(distance)), key=lambda s: (distance[s], s))


@torch.no_grad()
def estimate_transform(model: PreTrainedModel, sequences: Sequence[torch.Tensor], start: int,
                       count: int) -> torch.Tensor:
    """T (hidden x hidden, float32) for cutting layers start..start+count-1; normal equations in float64."""
    layers = decoder_layers(model)
    before, last = layers[start - 1], layers[start + count - 1]
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str, value: torch.Tensor) -> None:
        seen[name] = value[0].double()

    handles = [
        before.post_attention_layernorm.register_forward_pre_hook(lambda m, args: keep("x", args[0])),
        before.mlp.register_forward_hook(lambda m, args, out: keep("m", out)),
        last.register_forward_hook(lambda m, args, out: keep("y", out[0] if isinstance(out, tuple) else out)),
    ]
    hidden = model.config.hidden_size
    gram = torch.zeros(hidden, hidden, dtype=torch.float64, device=model.device)
    cross = torch.zeros_like(gram)
    try:
        for ids in sequences:
            model.get_decoder()(input_ids=ids.to(model.device), use_cache=False)
            gram += seen["m"].T @ seen["m"]
            cross += seen["m"].T @ (seen["y"] - seen["x"])
    finally:
        for handle in handles:
            handle.remove()
    damping = RIDGE * gram.diagonal().mean() * torch.eye(hidden, dtype=torch.float64, device=gram.device)
    return torch.linalg.solve(gram + damping, cross).float().cpu()


def replaceme_operations(model: PreTrainedModel, sequences: Sequence[torch.Tensor], stats: LayerStats,
                         count: int, start: int | str) -> list[dict]:
    start = block_start(stats, count) if start == "auto" else int(start)
    transform = estimate_transform(model, sequences, start, count)
    return [{"op": "linear", "start": start, "count": count, "transform": transform}]
