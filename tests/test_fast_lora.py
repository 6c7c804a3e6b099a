"""The LoRA fast path (bmw.train.fast_lora) against PEFT's own forward: same outputs and adapter gradients, in
fp32 and under bf16 autocast, with the update really inside one GEMM per adapted linear."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.tuners_utils import BaseTunerLayer
from torch.utils._python_dispatch import TorchDispatchMode

from bmw.base.tiny import build_tiny_model
from bmw.models.surgery import apply_plan
from bmw.params import VariantParams
from bmw.train.config import lora_config
from bmw.train.fast_lora import set_adapter_input_casts, set_fused_updates
from tests.test_train import PLAN

pytestmark = pytest.mark.usefixtures("one_thread")


class CountOps(TorchDispatchMode):
    """Counts the aten operators a forward and backward dispatch, and the elements each one writes."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.elements: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.counts[name] = self.counts.get(name, 0) + 1
        self.elements[name] = self.elements.get(name, 0) + (out.numel() if isinstance(out, torch.Tensor) else 0)
        return out


def peft_model(dtype: torch.dtype = torch.float32, dropout: float = 0.0):
    torch.manual_seed(0)
    model = apply_plan(build_tiny_model(0), PLAN).to(dtype)
    peft = get_peft_model(model, lora_config(VariantParams(r=4, alpha=8, dropout=dropout)))  # adapters in fp32
    for name, p in peft.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(p, std=0.05)  # lora_B starts at zero: make the adapters change the output
    return peft


def step(peft, ids: torch.Tensor, autocast: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the adapters' gradients of one forward and backward."""
    peft.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = peft(input_ids=ids).logits.float()
        logits.logsumexp(-1).mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}


IDS = torch.randint(3, 2000, (2, 24), generator=torch.Generator().manual_seed(1))


def test_fused_update_equals_peft_and_runs_one_gemm_per_adapter():
    peft = peft_model()
    adapted = sum(type(m) is LoraLinear for m in peft.modules())
    with CountOps() as peft_ops:
        reference, reference_grads = step(peft, IDS)
    set_fused_updates(peft, enabled=True)
    with CountOps() as fused_ops:
        logits, grads = step(peft, IDS)
    torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
    assert grads.keys() == reference_grads.keys() and len(grads) == 2 * adapted
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6)
    # the decoder's linears have no bias, so every addmm is a fused LoRA update; the scaling now multiplies
    # rank-wide gradients instead of full-width outputs and gradients, and the full-width adds are gone
    assert peft_ops.counts.get("addmm", 0) == 0 and fused_ops.counts["addmm"] == adapted
    assert fused_ops.elements["mul"] < 0.8 * peft_ops.elements["mul"]
    assert fused_ops.elements["add"] < 0.8 * peft_ops.elements["add"]
    set_fused_updates(peft, enabled=False)  # back to PEFT's forward
    assert not any("forward" in m.__dict__ for m in peft.modules() if type(m) is LoraLinear)
    torch.testing.assert_close(step(peft, IDS)[0], reference)


def adapter_input_dtypes(peft) -> list[torch.dtype]:
    """The dtypes the adapters' lora_A sees, appended on every forward from now on."""
    seen: list[torch.dtype] = []
    for module in peft.modules():
        if isinstance(module, BaseTunerLayer):
            module.lora_A["default"].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    return seen


@pytest.mark.parametrize("fused", [False, True], ids=["peft-update", "fused-update"])
def test_lora_inputs_stay_bf16_under_autocast(fused):
    peft = peft_model(torch.bfloat16)
    seen = adapter_input_dtypes(peft)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reference = peft(input_ids=IDS).logits.float()
    assert set(seen) == {torch.float32}  # PEFT's cast: a full fp32 copy of every adapted input
    seen.clear()
    set_fused_updates(peft, enabled=fused)
    set_adapter_input_casts(peft, enabled=False)
    logits, grads = step(peft, IDS, autocast=True)
    assert set(seen) == {torch.bfloat16}
    torch.testing.assert_close(logits, reference, atol=0.05, rtol=0.02)
    assert all(g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads.values())  # fp32 master adapters


def test_dropout_disabled_and_merged_adapters_follow_peft():
    peft = peft_model(dropout=0.3)
    peft.train()
    torch.manual_seed(5)
    reference = step(peft, IDS)[0]
    set_fused_updates(peft, enabled=True)
    torch.manual_seed(5)  # the same dropout masks: dropout is drawn once per adapted linear, as in PEFT
    torch.testing.assert_close(step(peft, IDS)[0], reference, rtol=1e-5, atol=1e-5)
    peft.eval()
    with torch.no_grad():
        with peft.disable_adapter():
            base = peft(input_ids=IDS).logits
        adapted = peft(input_ids=IDS).logits
        peft.merge_adapter()
        merged = peft(input_ids=IDS).logits
    assert not torch.allclose(base, adapted)
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)
