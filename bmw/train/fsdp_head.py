"""FSDP2 and TRL's fused LM-head loss: close the LM head's shard unit after each evaluation.

accelerate shards [final norm, LM head] as one FSDP2 unit that stays gathered after forward. TRL's loss reads the
head's weight without calling the head, so that unit's forward never completes: FSDP2 gathers a unit again only once
its previous forward completed. A backward resets this; an evaluation has none. Before torch 2.13 (which completes
such units itself), the checkpoint saved after an evaluation resharded the unit and the next training step ran the
final norm on its shard: on 2 H200s an illegal memory access in Liger's RMSNorm, or "mixed torch.Tensor and DTensor"
without Liger (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback


class CompleteHeadForward(TrainerCallback):
    """After each evaluation, call the LM head on zero rows: its unit's forward completes, nothing is computed."""

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        head = model.get_output_embeddings()
        with torch.no_grad():
            head(torch.zeros(0, head.in_features, device=head.weight.device, dtype=head.weight.dtype))
