"""`train.compile`: torch.compile of each decoder layer, and packed batches of one fixed shape to compile for.

Why: a LoRA step at Qwen3-8B's shape spends ~40% of its GPU time outside the GEMMs and attention (residual and
gradient adds, norms, SwiGLU, RoPE, copies: hundreds of small kernels per layer), and the GPU idles 14% of the step
waiting for the host to launch them (bmw bench --profile, docs/benchmarks.md). Inductor fuses those into a few
kernels per layer and launches them from generated code. Liger's hand-written kernels for the same ops are left off:
inductor makes its own.

Why per layer: every decoder layer runs the same code, so one graph serves them all (the layers' weights are its
inputs), compiled once for the forward and once for the backward. The LM head, the loss and the optimizer stay eager.

Why a fixed shape: packing makes every batch a different number of tokens, and each new length would compile again.
The collator pads each padding-free batch to batch_size x max_length tokens (bmw.train.config); packs are
filled best-fit, so the padding is a few percent, and the padded positions are one-token documents outside the loss.
"""

from __future__ import annotations

from torch import nn

from bmw.models.surgery import decoder_layers


def compile_decoder_layers(model: nn.Module) -> int:
    """Compile each decoder layer's forward in place (nn.Module.compile: activation checkpointing, PEFT's adapters and
    FP8 linears inside a layer are compiled with it); the number of layers compiled."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)
