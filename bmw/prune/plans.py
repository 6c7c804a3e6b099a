"""Layer plans: which decoder layers of the base a model type keeps or merges, and why (the scores).

A plan is a JSON-able dict:
  {"type", "params" (the params it was made with), "layers_before", "layers_after",
   "operations" (replayed in order by `surgery.apply_plan`), "sources" (the original layers inside each
   resulting layer), "scores": {"block_influence": [per layer], "angular": {"block_size": n, "distance": [...]}},
   "calibration": {"documents", "tokens"}, and for LaCo "trials": [{"start", "original_layers", "similarity",
   "accepted"}]}; a replaceme plan's operation carries its linear map (saved beside the JSON: `bmw.models.plan`);
   a healed plan ends with `lowrank` operations and records "heal" (`bmw.prune.heal`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bmw.models.surgery import decoder_layers
from bmw.params import ModelParams, ModelType, ParamsError, check_type_layers
from bmw.prune.calibration import calibration_sequences
from bmw.prune.heal import final_states, heal_plan
from bmw.prune.laco import laco_merges
from bmw.prune.replaceme import replaceme_operations
from bmw.prune.scores import LayerStats, layer_stats


def validate(model_type: ModelType, p: ModelParams, layers: int) -> None:
    """Params that the schema accepts but this model cannot satisfy; the error names the key."""
    check_type_layers(model_type, p, layers)


def _lowest(scores: Sequence[float], count: int, allowed: Sequence[int]) -> list[int]:
    """The `count` allowed layers with the lowest score (ties: lower index first)."""
    return sorted(sorted(allowed, key=lambda i: (scores[i], i))[:count])


def _keep_all_but(layers: int, dropped: Sequence[int]) -> list[dict]:
    return [{"op": "keep", "layers": [i for i in range(layers) if i not in set(dropped)]}] if dropped else []


def _pruned_ops(p: ModelParams, layers: int, stats: LayerStats) -> list[dict]:
    keep, n = p.pruned.keep, layers - p.pruned.keep
    last = layers - 1
    if p.pruned.score == "prefix":
        kept = list(range(keep - 1)) + [last] if p.pruned.keep_last else list(range(keep))
        return [{"op": "keep", "layers": kept}] if n else []
    if p.pruned.score == "block_influence":
        allowed = range(last) if p.pruned.keep_last else range(layers)
        return _keep_all_but(layers, _lowest(stats.block_influence, n, allowed))
    if n == 0:
        return []
    distance = stats.angular_distance(n)  # distance[l]: block l..l+n-1 removed
    starts = range(layers - n) if p.pruned.keep_last else range(layers - n + 1)
    start = min(starts, key=lambda s: (distance[s], s))
    return _keep_all_but(layers, range(start, start + n))


def layer_sources(layers: int, operations: Sequence[dict]) -> list[list[int]]:
    """The original layers inside each resulting layer after `operations`."""
    sources = [[i] for i in range(layers)]
    for op in operations:
        if op["op"] == "lowrank":  # an update of weights: every layer stands for what it stood for
            continue
        if op["op"] == "keep":
            sources = [sources[i] for i in op["layers"]]
        else:  # a merge, or a linear map standing for layers start..start+count-1 inside layer start-1
            s, c = (op["start"], op["count"]) if op["op"] == "merge" else (op["start"] - 1, op["count"] + 1)
            sources[s : s + c] = [sorted(i for group in sources[s : s + c] for i in group)]
    return sources


def removed_layers(plan: dict) -> list[int]:
    """The base's layers a plan takes out as layers of their own: dropped (keep), merged into a lower layer (LaCo's
    merge), cut for a linear map folded into the layer before them (ReplaceMe). What the prune plot marks."""
    sources = layer_sources(plan["layers_before"], plan["operations"])
    return sorted(set(range(plan["layers_before"])) - {group[0] for group in sources})


def calibration_budget(model_type: ModelType, p: ModelParams) -> tuple[int, int]:
    """(documents, tokens) of calibration text a type's plan is made on: ReplaceMe's map needs its own, larger,
    budget; every other type shares `model.laco.calibration_docs` / `model.calibration_tokens`."""
    if model_type == "replaceme":
        return p.replaceme.calibration_docs, p.replaceme.calibration_tokens
    return p.laco.calibration_docs, p.calibration_tokens


def make_plans(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train_path: Path,
               types: Sequence[ModelType], p: ModelParams, seed: int) -> tuple[dict[str, dict], LayerStats]:
    """The plan of every type in `types`, healed where `model.heal` asks, and the layer stats of the shared
    calibration text (what the stage plots). Calibration text is read, and scored, once per budget
    (`calibration_budget`; healing's is `model.heal`'s)."""
    texts: dict[tuple[int, int], list[torch.Tensor]] = {}
    scored: dict[tuple[int, int], LayerStats] = {}
    taught: dict[tuple[int, int], list[torch.Tensor]] = {}

    def sequences(budget: tuple[int, int]) -> list[torch.Tensor]:
        if budget not in texts:
            texts[budget] = calibration_sequences(train_path, tokenizer, *budget, model.config.max_position_embeddings)
        return texts[budget]

    def stats(budget: tuple[int, int]) -> LayerStats:
        if budget not in scored:
            scored[budget] = layer_stats(model, sequences(budget))
        return scored[budget]

    def teacher_states(budget: tuple[int, int]) -> list[torch.Tensor]:
        """The original's final states on the healing text: computed once for every healed type."""
        if budget not in taught:
            taught[budget] = final_states(model, sequences(budget))
        return taught[budget]

    shared = stats(calibration_budget("original", p))
    heal_budget = (p.heal.calibration_docs, p.heal.calibration_tokens)
    plans = {}
    for model_type in types:
        budget = calibration_budget(model_type, p)
        plan = make_plan(model_type, p, model, stats(budget), sequences(budget))
        if p.heal.method != "none" and plan["operations"]:  # a model with nothing removed has nothing to heal
            plan = heal_plan(model, plan, sequences(heal_budget), p.heal, seed, teacher_states(heal_budget))
        plans[model_type] = plan
    return plans, shared


def make_plan(
    model_type: ModelType,
    p: ModelParams,
    model: PreTrainedModel,
    stats: LayerStats,
    sequences: Sequence[torch.Tensor],
) -> dict:
    """The plan of `model_type` for `model` (left unchanged); LaCo runs its merge trials on `sequences`."""
    layers = len(decoder_layers(model))
    validate(model_type, p, layers)
    trials = None
    if model_type == "original":
        params, operations = {}, []
    elif model_type == "dropped":
        params = p.dropped.model_dump()
        auto = p.dropped.layers == "auto"
        dropped = _lowest(stats.block_influence, p.dropped.count, range(layers)) if auto else p.dropped.layers
        operations = _keep_all_but(layers, dropped)
    elif model_type == "pruned":
        params = p.pruned.model_dump()
        operations = _pruned_ops(p, layers, stats)
    elif model_type == "laco":
        params = p.laco.model_dump()
        operations, trials = laco_merges(model, sequences, p.laco)
    elif model_type == "replaceme":
        params = p.replaceme.model_dump()
        operations = replaceme_operations(model, sequences, stats, p.replaceme.count, p.replaceme.start)
    else:
        raise ParamsError(f"model.type: unknown type {model_type!r}")
    sources = layer_sources(layers, operations)
    removed = layers - len(sources)
    scores: dict = {"block_influence": [round(x, 6) for x in stats.block_influence]}
    if removed:
        scores["angular"] = {"block_size": removed, "distance": [round(x, 6) for x in stats.angular_distance(removed)]}
    plan = {
        "type": model_type,
        "params": {"calibration_tokens": p.calibration_tokens} | params,  # replaceme's own budget wins
        "layers_before": layers,
        "layers_after": len(sources),
        "operations": operations,
        "sources": sources,
        "scores": scores,
        "calibration": {"documents": len(sequences), "tokens": stats.tokens},
    }
    if trials is not None:
        plan["trials"] = trials
    return plan


def parameter_counts(model: PreTrainedModel, plan: dict) -> tuple[int, int]:
    """Parameters of the base and of the planned model (decoder layers are all the same size)."""
    before = sum(t.numel() for t in model.parameters())
    per_layer = sum(t.numel() for t in decoder_layers(model)[0].parameters())
    return before, before - (plan["layers_before"] - plan["layers_after"]) * per_layer
