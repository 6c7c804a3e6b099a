"""Bench models: the tiny Qwen3, SmolLM2-135M's or Qwen3-8B's exact shape with random weights made on the target
device, cut to a model type by the plan the prune stage makes from the params' defaults.

Random weights are enough for throughput: every matmul, attention and kernel is the real size. The 8B model is
built inside a `torch.device` context in bf16, so its 16 GB of weights never exist on the host.
"""

from __future__ import annotations

from typing import get_args

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen3ForCausalLM

from bmw.base.tiny import build_tiny_model, qwen3_8b_config
from bmw.models.surgery import apply_plan
from bmw.params import ModelParams, ModelType
from bmw.prune.plans import make_plan
from bmw.prune.scores import layer_stats

SHAPES = ("tiny", "smollm2", "qwen3-8b")
TYPES: tuple[str, ...] = get_args(ModelType)


def smollm2_config() -> LlamaConfig:
    """SmolLM2-135M-Instruct's architecture (the embedded default's base), for CPU timings."""
    return LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                       rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)


@torch.no_grad()
def default_plan(model: PreTrainedModel, model_type: str, seed: int = 0) -> dict:
    """The prune stage's plan of `model_type` under the params' defaults, scored on random tokens. LaCo accepts
    every merge (T = -1) up to its compression cap: similarities of random weights mean nothing, the shape is what
    the bench times."""
    if model_type not in TYPES:
        raise ValueError(f"type {model_type!r}: expected one of {', '.join(TYPES)}")
    params = ModelParams()
    params = params.model_copy(update={"laco": params.laco.model_copy(update={"T": -1.0})})
    generator = torch.Generator().manual_seed(seed)
    sequences = [torch.randint(model.config.vocab_size, (1, 64), generator=generator) for _ in range(2)]
    return make_plan(model_type, params, model, layer_stats(model, sequences), sequences)


def build_model(shape: str, model_type: str, device: torch.device, attn: str = "sdpa",
                seed: int = 0) -> tuple[PreTrainedModel, dict]:
    """A random `shape` model on `device` (tiny, smollm2: float32; qwen3-8b: bf16) cut to `model_type`, and its
    plan."""
    torch.manual_seed(seed)
    if shape == "tiny":
        model = build_tiny_model(seed).to(device)
    elif shape == "smollm2":
        model = LlamaForCausalLM(smollm2_config()).to(device)
    elif shape == "qwen3-8b":
        with torch.device(device):
            model = Qwen3ForCausalLM._from_config(qwen3_8b_config(), dtype=torch.bfloat16)
    else:
        raise ValueError(f"shape {shape!r}: expected one of {', '.join(SHAPES)}")
    model.set_attn_implementation(attn)
    plan = default_plan(model.eval(), model_type, seed)
    return apply_plan(model, plan), plan
