"""FP8 training (bmw.train.float8) on the real tiny Qwen3: which linears convert, the frozen-weight GEMMs against
torchao's own. torch 2.13's CPU build runs torch._scaled_mm, so this is the real path."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torchao.float8 import Float8LinearConfig
from torchao.float8.float8_linear import Float8Linear

from bmw.base.tiny import build_tiny_model
from bmw.models.surgery import apply_plan
from bmw.params import VariantParams
from bmw.train.config import FP8_RECIPES, lora_config
from bmw.train.float8 import FrozenWeightFloat8Linear, convert_linears, fp8_eligible
from tests.test_train import LINEAR, PLAN

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny():
    torch.manual_seed(0)
    return apply_plan(build_tiny_model(0), PLAN)  # 3 layers of width 64: every decoder linear 16-aligned


def test_lora_converts_the_base_layers_and_full_every_decoder_linear():
    peft = get_peft_model(tiny(), lora_config(VariantParams(r=4, alpha=8)))
    names = convert_linears(peft)
    assert len(names) == 3 * len(LINEAR) and all(n.endswith(".base_layer") for n in names)
    fp8 = {n for n, m in peft.named_modules() if isinstance(m, Float8Linear)}
    assert fp8 == set(names)
    assert all(type(m) is nn.Linear for n, m in peft.named_modules() if "lora_" in n and isinstance(m, nn.Linear))
    assert type(peft.get_output_embeddings()) is nn.Linear
    assert convert_linears(peft) == []  # a second trainer on the model converts nothing again

    model = tiny()
    names = convert_linears(model, "rowwise")
    assert {n.rsplit(".", 1)[-1] for n in names} == LINEAR and len(names) == 3 * len(LINEAR)
    assert type(model.lm_head) is nn.Linear and type(model.model.embed_tokens) is nn.Embedding
    assert not fp8_eligible(model)(nn.Linear(64, 24), "model.layers.0.mlp.up_proj")  # 24 rows: not 16-aligned
    with pytest.raises(ValueError, match="FP8 recipe 'blockwise'"):
        convert_linears(model, "blockwise")


class CountMatmuls(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.matmuls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.matmuls += func.overloadpacket.__name__ in ("mm", "addmm", "_scaled_mm")
        return func(*args, **(kwargs or {}))


def fp8_linear(cls, weight: nn.Parameter, recipe: str):
    config = Float8LinearConfig.from_recipe_name(recipe)
    layer = cls.from_float(nn.Linear(weight.shape[1], weight.shape[0], bias=False), config=config)
    layer.weight = weight
    return layer


@pytest.mark.parametrize("recipe", FP8_RECIPES)
def test_a_frozen_weight_gets_no_gradient_gemm_and_the_same_numbers_as_torchao(recipe):
    """torchao's backward computes a frozen weight's gradient anyway (autograd drops it); ours does not, keeps no
    input for it, and gives bit-equal outputs and input gradients. A trainable weight goes through torchao's."""
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(48, 64, dtype=torch.bfloat16) / 8, requires_grad=False)
    x = torch.randn(3, 10, 64, dtype=torch.bfloat16)
    grad = torch.randn(3, 10, 48, dtype=torch.bfloat16)
    found = {}
    for cls in (Float8Linear, FrozenWeightFloat8Linear):
        inputs = x.clone().requires_grad_()
        saved: list[torch.Size] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
            out = fp8_linear(cls, weight, recipe)(inputs)
        with CountMatmuls() as backward:
            out.backward(grad)
        found[cls] = out, inputs.grad, backward.matmuls, saved
    (out, grad_x, matmuls, saved), (ours, ours_grad_x, ours_matmuls, ours_saved) = found.values()
    assert torch.equal(ours, out) and torch.equal(ours_grad_x, grad_x)
    assert (matmuls, ours_matmuls) == (2, 1)
    assert x.shape in saved and x.shape not in ours_saved
    assert 0 < (out.float() - x.float() @ weight.float().t()).abs().max() < 0.1 * out.abs().max()  # FP8: close
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an fp32 input, as the CPU's bf16 compute gives it
        assert torch.equal(fp8_linear(FrozenWeightFloat8Linear, weight, recipe)(x.float()), ours)

    weight.requires_grad_(True)
    fp8_linear(FrozenWeightFloat8Linear, weight, recipe)(x).backward(grad)
    reference = weight.grad.clone()
    weight.grad = None
    fp8_linear(Float8Linear, weight, recipe)(x).backward(grad)
    assert torch.equal(weight.grad, reference)
