"""Per-layer redundancy scores on calibration text.

- block influence (ShortGPT, arXiv 2403.03853): 1 - mean over tokens of cos(layer input, layer output);
- angular distance (arXiv 2403.17887): arccos(cos(x_l, x_{l+n})) / pi on the last token, x_l the input of layer l,
  for a block of n layers; the block that minimises it changes the representation least.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from bmw.models.surgery import decoder_layers


@dataclass(frozen=True)
class LayerStats:
    block_influence: list[float]  # per layer
    last_token_states: torch.Tensor  # [sequences, layers + 1, hidden]: x_0 .. x_L at the last token (float32)
    tokens: int

    def angular_distance(self, n: int) -> list[float]:
        """Mean over sequences of arccos(cos(x_l, x_{l+n}))/pi for every block start l = 0 .. L-n."""
        states = self.last_token_states
        layers = states.shape[1] - 1
        if not 1 <= n <= layers:
            raise ValueError(f"angular distance block size {n} must be in 1..{layers}")
        cos = F.cosine_similarity(states[:, : layers + 1 - n], states[:, n:], dim=-1).clamp(-1.0, 1.0)
        return (torch.arccos(cos) / torch.pi).mean(dim=0).tolist()


def _hidden_states_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@torch.no_grad()
def layer_stats(model: PreTrainedModel, sequences: Sequence[torch.Tensor]) -> LayerStats:
    """One forward pass per sequence, reading every decoder layer's raw input and output through hooks
    (the model's own `hidden_states[-1]` is after the final norm, not the last layer's output)."""
    layers = decoder_layers(model)
    cos_sums = torch.zeros(len(layers), dtype=torch.float64)
    inputs: list[torch.Tensor] = [None] * len(layers)  # type: ignore[list-item]
    outputs: list[torch.Tensor] = [None] * len(layers)  # type: ignore[list-item]

    def hook(idx: int):
        def record(module, args, kwargs, output):
            inputs[idx] = _hidden_states_arg(args, kwargs)[0].float()
            outputs[idx] = (output[0] if isinstance(output, tuple) else output)[0].float()

        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    last_states, tokens = [], 0
    try:
        for ids in sequences:
            model.get_decoder()(input_ids=ids.to(model.device), use_cache=False)
            for i in range(len(layers)):
                cos_sums[i] += F.cosine_similarity(inputs[i], outputs[i], dim=-1).double().sum().cpu()
            last_states.append(torch.stack([x[-1] for x in inputs] + [outputs[-1][-1]]).cpu())
            tokens += ids.shape[-1]
    finally:
        for handle in handles:
            handle.remove()
    return LayerStats((1 - cos_sums / tokens).tolist(), torch.stack(last_states), tokens)


@torch.no_grad()
def final_hidden_states(model: PreTrainedModel, sequences: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The representation the LM head reads (after the final norm), per sequence, float32."""
    return [model.get_decoder()(input_ids=ids.to(model.device), use_cache=False).last_hidden_state[0].float()
            for ids in sequences]


def mean_cosine(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Token-weighted mean cosine similarity of paired [tokens, hidden] states."""
    total = sum(F.cosine_similarity(x, y, dim=-1).double().sum() for x, y in zip(a, b, strict=True))
    return float(total / sum(x.shape[0] for x in a))
