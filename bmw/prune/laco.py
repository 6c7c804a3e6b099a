"""LaCo layer collapse (Yang et al. 2024, arXiv 2402.11187).

Top down from layer H-C to L: merge layers l..l+C-1 into l; keep the merge if the mean cosine similarity of the
final hidden states against the ORIGINAL model on calibration text exceeds T, then step down by I, else by 1.
Merges apply to the model as it stands, so later merges may take in earlier merged layers (nested merges); the
recorded operations use those current indices and replay exactly through `apply_plan`. An accepted merge removes
C-1 layers while the position moves down by only I: where fewer than C layers are left from the position, the merge
takes those that exist (as the official code clamps it), and none where only one is left.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from transformers import PreTrainedModel

from bmw.models.surgery import apply_operation, decoder_layers, layer_types, set_layers
from bmw.params import LacoParams
from bmw.prune.scores import final_hidden_states, mean_cosine

log = logging.getLogger(__name__)


def laco_merges(
    model: PreTrainedModel, sequences: Sequence[torch.Tensor], p: LacoParams
) -> tuple[list[dict], list[dict]]:
    """The accepted merge operations and every trial with its similarity; `model` is left as it was."""
    original_layers = list(decoder_layers(model))
    original_types = layer_types(model)
    reference = final_hidden_states(model, sequences)
    cap = int(p.max_compression * len(original_layers))  # most layers that may be removed
    sources = [[i] for i in range(len(original_layers))]  # the original layers inside each current layer
    operations: list[dict] = []
    trials: list[dict] = []
    removed = 0
    layer = p.H - p.C
    try:
        while layer >= p.L and removed + p.C - 1 <= cap:
            count = min(p.C, len(decoder_layers(model)) - layer)
            if count < 2:
                layer -= 1
                continue
            before_layers, before_types = list(decoder_layers(model)), layer_types(model)
            op = {"op": "merge", "start": layer, "count": count, "rule": p.merge, "scope": p.scope}
            apply_operation(model, op)
            similarity = mean_cosine(final_hidden_states(model, sequences), reference)
            accepted = similarity > p.T
            merged = sorted(i for group in sources[layer : layer + count] for i in group)
            trials.append({"start": layer, "original_layers": merged, "similarity": round(similarity, 6),
                           "accepted": accepted})
            log.info("LaCo merge %d..%d (original %s): similarity %.4f %s", layer, layer + count - 1, merged,
                     similarity, "accepted" if accepted else "rejected")
            if accepted:
                operations.append(op)
                sources[layer : layer + count] = [merged]
                removed += count - 1
                layer -= p.I
            else:
                set_layers(model, before_layers, before_types)
                layer -= 1
    finally:
        set_layers(model, original_layers, original_types)
    return operations, trials
