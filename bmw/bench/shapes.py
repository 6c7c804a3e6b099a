"""Bench models: the tiny Qwen3 or Qwen3-8B's exact shape with random weights made on the target device.

Random weights are enough for throughput: every matmul, attention and kernel is the real size. The 8B model is
built inside a `torch.device` context in bf16, so its 16 GB of weights never exist on the host.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, Qwen3ForCausalLM

from bmw.models.surgery import apply_plan
from bmw.models.tiny import QWEN3_LAYERS, build_tiny_model, qwen3_8b_config

SHAPES = ("tiny", "qwen3-8b")
VARIANTS = ("original", "dropped", "pruned", "laco")


def bench_plan(variant: str, layers: int = QWEN3_LAYERS) -> dict:
    """Fixed plans of the params' defaults (drop layer 16; keep the first 24; LaCo: four 3-layer merges from the
    top of its L..H range, 36 -> 28 layers). Fixed because LaCo's similarity trials mean nothing on random weights."""
    if variant == "original":
        ops: list[dict] = []
    elif variant == "dropped":
        ops = [{"op": "keep", "layers": [i for i in range(layers) if i != 16]}]
    elif variant == "pruned":
        ops = [{"op": "keep", "layers": list(range(24))}]
    elif variant == "laco":
        ops = [{"op": "merge", "start": s, "count": 3, "rule": "rdsc"} for s in (26, 23, 20, 17)]
    else:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    after = layers - sum(op["count"] - 1 for op in ops if op["op"] == "merge")
    if ops and ops[0]["op"] == "keep":
        after = len(ops[0]["layers"])
    return {"type": variant, "layers_before": layers, "layers_after": after, "operations": ops}


def build_model(shape: str, variant: str, device: torch.device, attn: str = "sdpa", seed: int = 0) -> PreTrainedModel:
    """A random `shape` model on `device` with `variant`'s plan applied (tiny: float32; qwen3-8b: bf16)."""
    torch.manual_seed(seed)
    if shape == "tiny":
        model = build_tiny_model(seed).to(device)
    elif shape == "qwen3-8b":
        with torch.device(device):
            model = Qwen3ForCausalLM._from_config(qwen3_8b_config(), dtype=torch.bfloat16)
    else:
        raise ValueError(f"shape {shape!r}: expected one of {', '.join(SHAPES)}")
    model.set_attn_implementation(attn)
    return apply_plan(model, bench_plan(variant))
