"""prune: layer plans for model.type and every type a variant pins, with per-layer scores on calibration text.

Writes models/plans/<variant>.json (the plan of the variant's type) and models/plans/_summary.json (sizes by type,
and the healing KL where `model.heal` heals), metrics/prune.json (model.type's sizes), metrics/layer_scores.json
and plots/layer_scores.png (the scores, and the layers each plan removes).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from bmw.gpus import lease_gpu
from bmw.io import atomic_dir, atomic_file, write_json
from bmw.models.base import BASE_DIR, check_against_base, load_base, model_device
from bmw.models.plan import PLANS_DIR, SUMMARY, plan_path, save_plan
from bmw.params import load_params
from bmw.prune.plans import make_plans, parameter_counts, removed_layers
from bmw.prune.plots import layer_score_rows, plot_layer_scores

TRAIN = Path("data/processed/train.jsonl")

log = logging.getLogger("prune")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    lease_gpu()  # one GPU of BMW_GPUS when experiments run in parallel (bmw/gpus.py)
    check_against_base(params, BASE_DIR)  # before the model is loaded: layer settings against its depth, dtype
    torch.manual_seed(params.seed)
    # cuBLAS is deterministic only with a fixed workspace; without it deterministic mode refuses its matmuls
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    # scores and every LaCo trial are forwards over the calibration text: on the GPU when there is one
    model, tokenizer = load_base(BASE_DIR, params.base.dtype, model_device())
    log.info("calibration forwards on %s in %s", model.device, model.dtype)
    p = params.model
    plans, stats = make_plans(model, tokenizer, TRAIN, params.types_in_use(), p, params.seed)
    by_type: dict = {}
    # installed together, once all is written
    with atomic_dir(PLANS_DIR) as tmp, atomic_file("metrics/prune.json") as prune_metrics, \
            atomic_file("metrics/layer_scores.json") as scores, atomic_file("plots/layer_scores.png") as plot:
        # one file per variant: train@<variant> depends on its own plan only, so a change of model.type re-runs the
        # variants that follow it and not those that pin a type
        for name in params.variants:
            save_plan(plan_path(name, tmp), plans[params.variant_type(name)])
        for model_type, plan in plans.items():
            before, after = parameter_counts(model, plan)
            by_type[model_type] = {
                "layers_before": plan["layers_before"],
                "layers_after": plan["layers_after"],
                "params_before": before,
                "params_after": after,
                "compression": round(1 - after / before, 6),
            }
            if "heal" in plan:  # KL per token to the original on the healing text, before and after
                by_type[model_type]["heal"] = {k: plan["heal"][k] for k in ("kl_before", "kl_after")}
            log.info("%s: %d -> %d layers", model_type, plan["layers_before"], plan["layers_after"])
        write_json(tmp / SUMMARY, by_type)
        # the DVC metrics of model.type: what the architecture keeps, two columns of `dvc exp show` (every size of
        # every type is in the summary)
        write_json(prune_metrics, {k: v for k, v in by_type[p.type].items() if k in ("layers_after", "compression",
                                                                                   "heal")})
        rows = layer_score_rows(stats.block_influence, stats.angular_distance(1))
        write_json(scores, rows)
        plot_layer_scores(rows, plot, f"Layer scores of {params.base.name} ({stats.tokens} tokens)",
                          {model_type: removed_layers(plan) for model_type, plan in plans.items()})


if __name__ == "__main__":
    main()
