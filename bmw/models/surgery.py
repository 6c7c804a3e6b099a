"""Layer surgery on a decoder-only transformers model: the one way plans are applied, in training and evaluation.

A plan's `operations` run in order, each on the layer indices of the model as it is at that point:
- `{"op": "keep", "layers": [i, ...]}`: keep these layers, in this order (dropping and pruning);
- `{"op": "merge", "start": l, "count": C, "rule": "rdsc"|"last", "scope": "linear"|"all"}`: replace layers
  l..l+C-1 by one merged layer (LaCo); `scope` says which parameters merge (a plan without it merged all of them);
- `{"op": "linear", "start": s, "count": n, "transform": T}`: cut layers s..s+n-1 and fold the hidden-size linear
  map T into the MLP down projection of layer s-1 (ReplaceMe): the model keeps its architecture, n layers shallower;
- `{"op": "lowrank", "module": name, "a": A, "b": B}`: add the low-rank update B A to the weight of the linear layer
  `name` (healing, `bmw.prune.heal`): the architecture is unchanged.

Architecture-generic: any Hugging Face decoder with `model.model.layers` (Llama, Qwen2, Qwen3, Mistral); only the
depth-dependent config fields a config has are rewritten.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from peft import PeftModel
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

MERGE_RULES = ("rdsc", "last")
MERGE_SCOPES = ("linear", "all")


def decoder_layers(model: PreTrainedModel | PeftModel) -> nn.ModuleList:
    """The decoder's layers; of a PEFT model, its base model's (adapters included)."""
    return (model.get_base_model() if isinstance(model, PeftModel) else model).get_decoder().layers


def layer_types(model: PreTrainedModel) -> list[str | None]:
    """`config.layer_types` where the config has them (Qwen2/3, Mistral); one None per layer where not (Llama)."""
    types = getattr(model.config, "layer_types", None)
    return list(types) if types is not None else [None] * len(decoder_layers(model))


def set_layers(model: PreTrainedModel, layers: Sequence[nn.Module], types: Sequence[str | None]) -> PreTrainedModel:
    """Install `layers` as the decoder stack and make the config and every layer index agree with it.

    The KV cache is sized from the config and addressed by `self_attn.layer_idx`: a stale count or index makes
    cached generation fail (or silently read another layer's cache) while training looks fine.
    """
    if len(layers) != len(types):
        raise ValueError(f"{len(layers)} layers but {len(types)} layer types")
    model.get_decoder().layers = nn.ModuleList(layers)
    for config in {id(c): c for c in (model.config, model.get_decoder().config)}.values():
        config.num_hidden_layers = len(layers)
        if getattr(config, "layer_types", None) is not None:  # Llama's config has none
            config.layer_types = list(types)
        if getattr(config, "max_window_layers", None) is not None:
            config.max_window_layers = min(config.max_window_layers, len(layers))
    shared = model.get_decoder().config
    for idx, layer in enumerate(layers):
        layer.self_attn.layer_idx = idx
        # a merged layer is a deep copy carrying its own config copy: re-point it, or a later switch of the
        # attention implementation (packing on the GPU) misses that layer
        for module in layer.modules():
            if isinstance(getattr(module, "config", None), PretrainedConfig):
                module.config = shared
    return model


def _linear_weights(layer: nn.Module) -> set[str]:
    return {f"{name}.{p}" for name, m in layer.named_modules() if isinstance(m, nn.Linear)
            for p, _ in m.named_parameters(recurse=False)}


@torch.no_grad()
def merge_layers(layers: Sequence[nn.Module], rule: str, scope: str = "all") -> nn.Module:
    """One layer standing for `layers`, the parameters of `scope` merged by `rule`, the others the first layer's.

    rdsc (LaCo's Reserving-Differences-while-Seeking-Common): theta_0 + sum_k (theta_k - theta_0).
    last: the last layer's weights (what LaCo's official code ends up with).
    scope linear: the linear projections (attention and MLP), as LaCo's official code merges; all: every parameter,
    norms included, as the paper's formula reads.
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"merge rule {rule!r}: expected one of {', '.join(MERGE_RULES)}")
    if scope not in MERGE_SCOPES:
        raise ValueError(f"merge scope {scope!r}: expected one of {', '.join(MERGE_SCOPES)}")
    if len(layers) < 2:
        raise ValueError("a merge needs at least two layers")
    merged = copy.deepcopy(layers[0])
    chosen = _linear_weights(merged) if scope == "linear" else {n for n, _ in merged.named_parameters()}
    sources = [dict(layer.named_parameters()) for layer in layers]
    for name, param in merged.named_parameters():
        if name not in chosen:
            continue
        if rule == "last":
            param.copy_(sources[-1][name])
        else:
            base = sources[0][name].float()
            param.copy_((base + sum(src[name].float() - base for src in sources[1:])).to(param.dtype))
    return merged


@torch.no_grad()
def fold_linear_map(projection: nn.Linear, transform: torch.Tensor) -> None:
    """Make `projection` output y T instead of y: with y = x W^T + b, y T = x (T^T W)^T + b T (in float64)."""
    if transform.shape != (projection.out_features, projection.out_features):
        raise ValueError(f"a linear map of shape {tuple(transform.shape)} does not fold into a projection to "
                         f"{projection.out_features} features")
    t = transform.to(projection.weight.device, torch.float64)
    projection.weight.copy_((t.T @ projection.weight.double()).to(projection.weight.dtype))
    if projection.bias is not None:
        projection.bias.copy_((projection.bias.double() @ t).to(projection.bias.dtype))


@torch.no_grad()
def add_lowrank(projection: nn.Linear, a: torch.Tensor, b: torch.Tensor) -> None:
    """W += B A (in float64), A: rank x in_features, B: out_features x rank."""
    weight = projection.weight
    if a.dim() != 2 or b.dim() != 2 or (b.shape[0], a.shape[1]) != tuple(weight.shape) or a.shape[0] != b.shape[1]:
        raise ValueError(f"low-rank factors B {tuple(b.shape)} x A {tuple(a.shape)} do not make an update of a "
                         f"weight of shape {tuple(weight.shape)}")
    delta = b.to(weight.device, torch.float64) @ a.to(weight.device, torch.float64)
    weight.copy_((weight.double() + delta).to(weight.dtype))


def _check_indices(op: dict, indices: Sequence[int], n: int) -> None:
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        shown = {k: v for k, v in op.items() if not isinstance(v, torch.Tensor)}
        raise ValueError(f"plan operation {shown}: layer(s) {bad} out of range for a model with {n} layers")


def apply_operation(model: PreTrainedModel, op: dict) -> PreTrainedModel:
    layers = list(decoder_layers(model))
    types = layer_types(model)
    if op.get("op") == "keep":
        keep = [int(i) for i in op["layers"]]
        _check_indices(op, keep, len(layers))
        if len(set(keep)) != len(keep) or not keep:
            raise ValueError(f"plan operation {op}: layers must be distinct and non-empty")
        return set_layers(model, [layers[i] for i in keep], [types[i] for i in keep])
    if op.get("op") == "merge":
        start, count = int(op["start"]), int(op["count"])
        _check_indices(op, [start, start + count - 1], len(layers))
        merged = merge_layers(layers[start : start + count], op["rule"], op.get("scope", "all"))
        return set_layers(
            model,
            layers[:start] + [merged] + layers[start + count :],
            types[: start + 1] + types[start + count :],
        )
    if op.get("op") == "linear":
        start, count = int(op["start"]), int(op["count"])
        _check_indices(op, [start - 1, start + count - 1], len(layers))
        if not isinstance(op.get("transform"), torch.Tensor):
            raise ValueError(f"plan operation linear at {start}: no transform tensor (load the plan with load_plan)")
        fold_linear_map(layers[start - 1].mlp.down_proj, op["transform"])
        return set_layers(model, layers[:start] + layers[start + count :], types[:start] + types[start + count :])
    if op.get("op") == "lowrank":
        name = op["module"]
        try:
            projection = model.get_submodule(name)
        except AttributeError:
            projection = None
        if not isinstance(projection, nn.Linear):
            raise ValueError(f"plan operation lowrank: {name!r} is no linear layer of this model")
        if not all(isinstance(op.get(k), torch.Tensor) for k in ("a", "b")):
            raise ValueError(f"plan operation lowrank on {name}: no factors (load the plan with load_plan)")
        add_lowrank(projection, op["a"], op["b"])
        return model
    raise ValueError(f"plan operation {op.get('op')!r}: unknown op (expected 'keep', 'merge', 'linear' or 'lowrank')")


def apply_plan(model: PreTrainedModel, plan: dict) -> PreTrainedModel:
    """Rebuild the plan's architecture from the base model, in place; returns the model."""
    before = len(decoder_layers(model))
    if plan.get("layers_before", before) != before:
        raise ValueError(
            f"plan {plan.get('type')!r} was made for {plan['layers_before']} layers; this model has {before}"
        )
    for op in plan.get("operations", []):
        apply_operation(model, op)
    after = len(decoder_layers(model))
    if plan.get("layers_after", after) != after:
        raise ValueError(f"plan {plan.get('type')!r}: expected {plan['layers_after']} layers, got {after}")
    return model
