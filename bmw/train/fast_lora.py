"""The LoRA fast path: two changes to how PEFT's Linear adds its low-rank update, each measured by `bmw bench`.

PEFT computes `result + lora_B(lora_A(dropout(x))) * scaling`: a full-width multiply and a full-width add per adapted
linear, forward and backward, on top of the GEMMs (10% of a LoRA step at Qwen3-8B's shape, bench profile). Folding
the scale and the add into the GEMM that applies lora_B (`addmm(result, A x, Bᵀ, alpha=scaling)`, cuBLAS's epilogue)
leaves only rank-wide work outside the matmuls; autograd then scales the r-wide gradients instead of the full ones.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer


def set_adapter_input_casts(model: PeftModel, enabled: bool) -> None:
    """Whether PEFT casts each LoRA input to the fp32 adapter dtype (its default); the fast path turns it off.

    Under bf16 autocast the adapter's matmuls run in bf16 anyway, so the cast only copies every adapted linear's
    input to fp32 and back: 13% of a LoRA step at Qwen3-8B's shape (bmw bench profile). The adapters stay fp32 master
    weights that autocast casts per call (r x hidden: small)."""
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = enabled


def _fused_forward(self: LoraLinear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's Linear.forward for one plain adapter (no DoRA or other LoRA kind, no bias on lora_B, not merged, no
    per-row adapter names), with the update added inside one GEMM. Anything else goes to PEFT's own forward."""
    active = [name for name in self.active_adapters if name in self.lora_A]
    if args or kwargs or self.disable_adapters or self.merged or len(active) != 1:
        return type(self).forward(self, x, *args, **kwargs)
    name = active[0]
    lora_a, lora_b = self.lora_A[name], self.lora_B[name]
    if name in self.lora_variant or lora_b.bias is not None:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    low_rank = lora_a(self.lora_dropout[name](self._cast_input_dtype(x, lora_a.weight.dtype)))
    # the GEMM in the base layer's output dtype (autocast's, when it is on), which PEFT casts its result back to
    fused = torch.addmm(result.reshape(-1, result.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]).to(result.dtype),
                        lora_b.weight.t().to(result.dtype), alpha=self.scaling[name])
    return fused.view(result.shape)


def set_fused_updates(model: PeftModel, enabled: bool) -> None:
    """Whether each LoRA Linear adds its update inside the lora_B GEMM (the fast path) or as PEFT does (its default).

    Only PEFT's own Linear is switched (not quantized or otherwise specialised subclasses)."""
    for module in model.modules():
        if type(module) is LoraLinear:
            if enabled:
                module.forward = types.MethodType(_fused_forward, module)
            else:
                module.__dict__.pop("forward", None)
