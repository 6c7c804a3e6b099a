"""Model FLOPs per trained token and MFU, with the convention stated in docs/benchmarks.md.

Matmul FLOPs: 2 per weight per token forward. Full fine-tuning adds 4 backward (input and weight gradients):
6·N. LoRA's frozen weights need only the input gradient: 4·N (the rank-r adapters, under 1% of that, are left out).
N counts the weights that multiply activations: every parameter but the input embedding table (a lookup).
Attention (PaLM's convention, not halved for causality): 12·L·d_attn·s per token for forward + backward, with
d_attn = heads·head_dim and s the length of the token's own document (packed documents do not see each other);
a token of a d-document batch uses s_eff = Σn²/Σn. Recomputed activations are not counted (model FLOPs, not
hardware FLOPs), so MFU compares runs with and without recomputation fairly.
"""

from __future__ import annotations

from typing import Sequence

from transformers import PreTrainedModel

H200_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100/H200 SXM (datasheet), the MFU denominator


def matmul_params(model: PreTrainedModel) -> int:
    embed = model.get_input_embeddings().weight
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and p is not embed)


def effective_context(lengths: Sequence[int]) -> float:
    return sum(n * n for n in lengths) / sum(lengths)


def flops_per_token(model: PreTrainedModel, method: str, s_eff: float, *, train: bool = True) -> float:
    cfg = model.config
    n = matmul_params(model)
    d_attn = cfg.num_attention_heads * cfg.head_dim
    layers = cfg.num_hidden_layers
    if not train:  # forward only: 2·N + 4·L·d_attn·s
        return 2 * n + 4 * layers * d_attn * s_eff
    weights = {"full": 6, "lora": 4}[method] * n
    return weights + 12 * layers * d_attn * s_eff


def mfu(tokens_per_s: float, flops_token: float, peak: float = H200_BF16_PEAK) -> float:
    return tokens_per_s * flops_token / peak
