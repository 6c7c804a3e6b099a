"""FP8 matmuls for training (`train.fp8`): the decoder's linears through torchao's float8 training.

Each GEMM casts its operands to float8 with scales computed from the tensors at hand (dynamic scaling) and returns
the input's dtype; the weights stay the parameters they were, in their dtype, so checkpoints and the saved variant
hold the usual tensors under the usual names. Converted: for LoRA the frozen base layers PEFT wraps, never the
adapters (a rank-16 GEMM is memory-bound: casting its full-width input costs more than FP8 saves; and they are the
trained fp32 masters); for full fine-tuning every decoder linear. Never the LM head: its logits feed the loss
directly.
"""

from __future__ import annotations

import logging

import torch
from peft import PeftModel
from torch import nn
from torchao.float8 import Float8LinearConfig
from torchao.float8.config import CastConfig
from torchao.float8.float8_linear import Float8Linear, matmul_with_hp_or_float8_args
from torchao.float8.float8_linear_utils import swap_linear_layers
from torchao.float8.float8_scaling_utils import get_maybe_axiswise_dim, hp_tensor_to_float8_dynamic
from torchao.float8.float8_training_tensor import GemmInputRole, LinearMMConfig

from bmw.train.config import FP8_ALIGNMENT, FP8_RECIPES

log = logging.getLogger(__name__)


def _cast(t: torch.Tensor, cast: CastConfig, config: Float8LinearConfig, mm: LinearMMConfig, role: GemmInputRole,
          axis: int):
    """`t` as a Float8TrainingTensor, scaled per tensor or (rowwise) along `axis`, as torchao casts it."""
    return hp_tensor_to_float8_dynamic(t, cast.target_dtype, mm, gemm_input_role=role,
                                       scaling_granularity=cast.scaling_granularity,
                                       axiswise_dim=get_maybe_axiswise_dim(axis, cast.scaling_granularity),
                                       round_scales_to_power_of_2=config.round_scales_to_power_of_2)


def weight_casts(weight: torch.Tensor, config: Float8LinearConfig, mm: LinearMMConfig):
    """A frozen weight's two float8 operands: weightᵀ for the forward GEMM, weight for the input gradient's, each in
    the column-major layout torch._scaled_mm takes (torchao would copy a row-major one into it at every call)."""
    return (_cast(weight.t(), config.cast_config_weight, config, mm, GemmInputRole.WEIGHT, 0),
            _cast(weight.t().contiguous(), config.cast_config_weight_for_grad_input, config, mm,
                  GemmInputRole.WEIGHT, -1).t())


class _FrozenWeightMatmul(torch.autograd.Function):
    """x @ weightᵀ in FP8 whose backward gives the input's gradient only: two of torchao's three GEMMs, and the
    input is not kept for a weight gradient. The weight comes cast (`casts`, weight_casts) or is cast at each use."""

    @staticmethod
    def forward(ctx, x, weight, casts, config: Float8LinearConfig, mm: LinearMMConfig):
        ctx.save_for_backward(weight if casts is None else casts[1])
        ctx.cast, ctx.config, ctx.mm = casts is None, config, mm
        forward_weight = (_cast(weight.t(), config.cast_config_weight, config, mm, GemmInputRole.WEIGHT, 0)
                          if casts is None else casts[0])
        rows = x.reshape(-1, x.shape[-1])
        out = torch.mm(_cast(rows, config.cast_config_input, config, mm, GemmInputRole.INPUT, -1), forward_weight)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        config, mm = ctx.config, ctx.mm
        if ctx.cast:
            weight = _cast(weight.t(), config.cast_config_weight_for_grad_input, config, mm, GemmInputRole.WEIGHT,
                           -1).t()
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = torch.mm(_cast(rows, config.cast_config_grad_output, config, mm, GemmInputRole.GRAD_OUTPUT, -1),
                          weight)
        return grad_x.reshape(*grad.shape[:-1], grad_x.shape[-1]), None, None, None, None


def fp8_matmul(x: torch.Tensor, weight: torch.Tensor, config: Float8LinearConfig, mm: LinearMMConfig,
               casts: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """x @ weightᵀ through FP8 GEMMs: torchao's three (input, weight and their gradients), or two where the weight is
    frozen, which reads `casts` (weight_casts) where given."""
    if weight.requires_grad:
        return matmul_with_hp_or_float8_args.apply(x, weight.t(), mm, config)
    return _FrozenWeightMatmul.apply(x, weight, casts, config, mm)


# Eager, each cast is a dozen small ops dispatched in Python through torchao's tensor subclass, four casts per linear
# and step: at Qwen3-8B's shape that host work, not the GEMMs, set the pace (FP8 LoRA ran at 0.57x of bf16 on an
# H100). Compiled, as torchao is built to run, a cast becomes a fused kernel or two. dynamic: one graph for every
# linear's shape and every batch's token count; the weight is an input, so no layer compiles its own.
compiled_fp8_matmul = torch.compile(fp8_matmul, dynamic=True, fullgraph=True)


class FrozenWeightFloat8Linear(Float8Linear):
    """torchao's Float8Linear, but a frozen weight gets no gradient computed, and on CUDA the casts and GEMMs run
    compiled. torchao's backward computes the weight's gradient whether it is wanted or not (autograd then drops
    it): for LoRA's base layers a third of the FP8 GEMM work, and the input kept for it, for nothing."""

    weight_fp8: tuple[torch.Tensor, torch.Tensor] | None = None  # cast_frozen_weight's

    def cast_frozen_weight(self) -> None:
        """Keep the frozen weight's two float8 casts (weight_casts) for every later step: they never change, and cast
        at each use they cost two amax reductions and two casts of the whole weight per step (torch.compile cannot
        know the weight is constant). 2 bytes per weight element; a weight changed in place afterwards is not seen."""
        with torch.no_grad():
            self.weight_fp8 = weight_casts(self.weight, self.config, self.linear_mm_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # autocast's dtype for the device at hand (torchao's own forward reads the CUDA one only)
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        matmul = compiled_fp8_matmul if x.is_cuda else fp8_matmul
        out = matmul(x, self.weight, self.config, self.linear_mm_config, self.weight_fp8)
        return out if self.bias is None else out + self.bias.to(out.dtype)


def fp8_eligible(model: nn.Module):
    """The filter of the linears `convert_linears` converts in `model` (module, dotted name) -> bool: a PeftModel's
    LoRA base layers, else every linear but the LM head; either with both dimensions divisible by FP8_ALIGNMENT."""
    head = model.get_output_embeddings()
    lora = isinstance(model, PeftModel)

    def eligible(module: nn.Module, name: str) -> bool:
        aligned = all(d % FP8_ALIGNMENT == 0 for d in module.weight.shape)
        fresh = not isinstance(module, Float8Linear)  # a second build_trainer on the model converts nothing again
        return aligned and fresh and module is not head and (name.endswith(".base_layer") or not lora)

    return eligible


def convert_linears(model: nn.Module, recipe: str = FP8_RECIPES[0], cast_frozen: bool = True) -> list[str]:
    """Swap `model`'s eligible linears (fp8_eligible) for FP8 ones in place, sharing their parameters; returns their
    names. `recipe`: torchao's tensorwise (one scale per tensor, cuBLAS's kernel, its fastest) or rowwise (a scale
    per row: more accurate, a slower kernel). `cast_frozen`: frozen weights (LoRA's base layers) are cast once, here
    (FrozenWeightFloat8Linear.cast_frozen_weight); not for a model FSDP will shard, whose every process would hold
    them whole."""
    if recipe not in FP8_RECIPES:
        raise ValueError(f"FP8 recipe {recipe!r}: expected one of {', '.join(FP8_RECIPES)}")
    config = Float8LinearConfig.from_recipe_name(recipe)
    eligible, converted = fp8_eligible(model), []

    def pick(module: nn.Module, name: str) -> bool:
        if eligible(module, name):
            converted.append(name)
            return True
        return False

    # torchao's convert_to_float8_training always builds its own Float8Linear: its swap helper takes the class
    swap_linear_layers(model, lambda linear: FrozenWeightFloat8Linear.from_float(linear, config=config),
                       module_filter_fn=pick)
    frozen = [m for n, m in model.named_modules() if n in converted and not m.weight.requires_grad]
    if cast_frozen:
        for module in frozen:
            module.cast_frozen_weight()
    log.info("train.fp8: %d linears run FP8 GEMMs (torchao %s scaling), %d frozen weights cast %s", len(converted),
             recipe, len(frozen), "once" if cast_frozen else "at each use")
    return converted
