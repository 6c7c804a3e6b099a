"""prune: layer plans for model.type and every type a variant pins, with per-layer scores on calibration text."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bmw.io import write_json
from bmw.io import atomic_dir
from bmw.models.base import load_base
from bmw.models.calibration import calibration_sequences
from bmw.models.plans import PLANS_DIR, make_plan, parameter_counts, plan_path, save_plan
from bmw.models.plots import layer_score_rows, plot_layer_scores
from bmw.models.scores import layer_stats
from bmw.params import load_params

BASE_DIR = Path("models/base")
TRAIN = Path("data/processed/train.jsonl")

log = logging.getLogger("prune")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    torch.manual_seed(params.seed)
    torch.use_deterministic_algorithms(True)
    model, tokenizer = load_base(BASE_DIR, params.base.dtype)
    p = params.model
    sequences = calibration_sequences(
        TRAIN, tokenizer, p.laco.calibration_docs, p.calibration_tokens, model.config.max_position_embeddings
    )
    stats = layer_stats(model, sequences)
    types = sorted({p.type} | {params.variant_type(name) for name in params.variants})
    metrics: dict = {"by_type": {}}
    with atomic_dir(PLANS_DIR) as tmp:
        for model_type in types:
            plan = make_plan(model_type, p, model, stats, sequences)
            save_plan(plan_path(model_type, tmp), plan)
            before, after = parameter_counts(model, plan)
            metrics["by_type"][model_type] = {
                "layers_before": plan["layers_before"],
                "layers_after": plan["layers_after"],
                "params_before": before,
                "params_after": after,
                "compression": round(1 - after / before, 6),
            }
            log.info("%s: %d -> %d layers", model_type, plan["layers_before"], plan["layers_after"])
    metrics |= metrics["by_type"][p.type]
    write_json("metrics/prune.json", metrics)
    rows = layer_score_rows(stats.block_influence, stats.angular_distance(1))
    write_json("metrics/layer_scores.json", rows)
    plot_layer_scores(rows, "plots/layer_scores.png", f"Layer scores of {params.base.name} ({stats.tokens} tokens)")


if __name__ == "__main__":
    main()
