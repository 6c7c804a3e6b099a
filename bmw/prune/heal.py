"""Healing (`model.heal`, optional): a short distillation right after layers are removed, before task fine-tuning.

The reduced model (base + plan) learns to match the original model's next-token distribution on calibration text:
KL(original || reduced) per token, through a rank-r update B A of every linear projection of its decoder layers
(LoRA as plain tensors: every weight of the model stays frozen), `steps` Adam steps of one calibration document
each. The updates join the plan as `lowrank` operations (bmw.models.surgery): the healed model keeps the base's
architecture, and every variant of the type (untrained, full, LoRA) starts from it.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from bmw.models.surgery import apply_operation, apply_plan, decoder_layers
from bmw.params import HealParams

# logits held at once while the KL is summed: chunks of positions, recomputed in the backward pass, so that the
# [tokens, vocabulary] logits never exist whole (4,096 x 151,936 for Qwen3-8B: 2.5 GB in float32)
CHUNK_LOGITS = 2**24
# Adam's first steps move every factor by about lr, whatever the gradient: warming up and decaying gave a lower KL
# after 12 steps on the tiny model for pruned, dropped and replaceme plans alike than a constant rate
WARMUP = 0.1
MAX_GRAD_NORM = 1.0  # a model pruned hard starts at a KL of several nats per token: its first gradients are large


@torch.no_grad()
def final_states(model: PreTrainedModel, sequences: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The final-norm hidden states [tokens, hidden] of each sequence: the original's logits, kept small (the
    head is applied chunk by chunk in `kl_sum`)."""
    return [model.get_decoder()(input_ids=ids.to(model.device), use_cache=False).last_hidden_state[0]
            for ids in sequences]


def _chunk_kl(states: torch.Tensor, target_states: torch.Tensor, head: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        target = F.log_softmax(head(target_states).float(), dim=-1)
    return F.kl_div(F.log_softmax(head(states).float(), dim=-1), target, log_target=True, reduction="sum")


def kl_sum(model: PreTrainedModel, ids: torch.Tensor, target_states: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Sum over the positions of `ids` of KL(original || model), the original's distribution given by its final
    states `target_states` through its output `head`."""
    states = model.get_decoder()(input_ids=ids.to(model.device), use_cache=False).last_hidden_state[0]
    step = max(1, CHUNK_LOGITS // head.weight.shape[0])
    chunks = [(states[i : i + step], target_states[i : i + step], head) for i in range(0, len(states), step)]
    if torch.is_grad_enabled():
        return sum(checkpoint(_chunk_kl, *chunk, use_reentrant=False) for chunk in chunks)
    return sum(_chunk_kl(*chunk) for chunk in chunks)


@torch.no_grad()
def mean_kl(model: PreTrainedModel, sequences: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
            head: nn.Module) -> float:
    """KL(original || model) per token over `sequences` (nats)."""
    total = sum(float(kl_sum(model, ids, target, head)) for ids, target in zip(sequences, targets))
    return total / sum(ids.shape[-1] for ids in sequences)


def _adds(a: torch.Tensor, b: torch.Tensor):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + F.linear(F.linear(args[0].to(a.dtype), a), b).to(output.dtype)

    return hook


def lowrank_factors(model: PreTrainedModel, rank: int, seed: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(module name, A, B) for every linear layer of the decoder layers, float32 on the model's device: A as PEFT
    starts LoRA (kaiming-uniform, bound 1/sqrt(in_features)) drawn on the CPU from `seed`, so the same on every
    device; B zero, so that healing starts from the reduced model as it is."""
    generator = torch.Generator().manual_seed(seed)
    inside = {id(m) for layer in decoder_layers(model) for m in layer.modules()}
    factors = []
    for name, linear in model.named_modules():
        if isinstance(linear, nn.Linear) and id(linear) in inside:
            a = (torch.rand(rank, linear.in_features, generator=generator) * 2 - 1) / math.sqrt(linear.in_features)
            b = torch.zeros(linear.out_features, rank)
            factors.append((name, a.to(linear.weight.device), b.to(linear.weight.device)))
    return factors


def warmup_cosine(steps: int):
    """The learning-rate factor of step k: a linear warm-up over the first WARMUP of `steps`, then a cosine to 0."""
    warmup = max(1, round(WARMUP * steps))
    return lambda k: ((k + 1) / warmup if k < warmup
                      else 0.5 * (1 + math.cos(math.pi * (k + 1 - warmup) / (steps + 1 - warmup))))


def heal_operations(teacher: PreTrainedModel, plan: dict, sequences: Sequence[torch.Tensor], p: HealParams,
                    seed: int, targets: Sequence[torch.Tensor] | None = None) -> tuple[list[dict], dict]:
    """The `lowrank` operations that heal `plan`'s model of `teacher` (left unchanged) on `sequences`, and the KL
    per token on them before and after (the latter of the merged updates, as variants get them). `targets`: the
    teacher's `final_states` of `sequences`, where a caller healing several plans on them computed them once."""
    student = apply_plan(copy.deepcopy(teacher), plan).requires_grad_(False)
    head = teacher.get_output_embeddings()
    targets = final_states(teacher, sequences) if targets is None else targets
    before = mean_kl(student, sequences, targets, head)
    factors = lowrank_factors(student, p.rank, seed)
    trained = [t.requires_grad_() for _, a, b in factors for t in (a, b)]
    modules = dict(student.named_modules())
    handles = [modules[name].register_forward_hook(_adds(a, b)) for name, a, b in factors]
    optimizer = torch.optim.Adam(trained, lr=p.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(p.steps))
    try:
        for step in range(p.steps):
            k = step % len(sequences)
            loss = kl_sum(student, sequences[k], targets[k], head) / sequences[k].shape[-1]
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(trained, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
    finally:
        for handle in handles:
            handle.remove()
    operations = [{"op": "lowrank", "module": name, "a": a.detach().cpu(), "b": b.detach().cpu()}
                  for name, a, b in factors]
    for op in operations:
        apply_operation(student, op)
    after = mean_kl(student, sequences, targets, head)
    return operations, {"kl_before": round(before, 6), "kl_after": round(after, 6)}


def heal_plan(teacher: PreTrainedModel, plan: dict, sequences: Sequence[torch.Tensor], p: HealParams,
              seed: int, targets: Sequence[torch.Tensor] | None = None) -> dict:
    """`plan` with the healing updates after its operations, and its record under "heal": the params, the
    calibration text and the KL before and after."""
    operations, kl = heal_operations(teacher, plan, sequences, p, seed, targets)
    record = {**p.model_dump(), "documents": len(sequences), "tokens": sum(ids.shape[-1] for ids in sequences), **kl}
    return {**plan, "operations": plan["operations"] + operations, "heal": record}
