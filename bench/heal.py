"""Healing against none: held-out perplexity and KL to the original of reduced models, healed and not.

bmw bench heal [--base smollm2-135m-instruct] [--types pruned,replaceme] [--steps 100] [--json OUT]

The base is made as the base stage makes it (default: the embedded SmolLM2, into a temporary folder). The text is
the bundled mirror's articles as chat rows (`instruct` style): the first --fit articles are the plans' calibration
text and the healing text, the next --heldout judge. Each type's plan comes from params.yaml's `model` section (the
pipeline's own settings), healing from `model.heal` with `method: lora` and --steps. Speeds are this machine's.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from bmw.base.materialise import materialise_base
from bmw.io import write_jsonl
from bmw.models.base import load_base, model_device
from bmw.models.surgery import apply_plan
from bmw.params import BaseModelParams, load_params
from bmw.prune.calibration import calibration_sequences
from bmw.prune.heal import final_states, heal_plan, mean_kl
from bmw.prune.plans import calibration_budget, make_plan
from bmw.prune.scores import layer_stats
from mirror.content import mirror_articles


def article_rows() -> list[dict]:
    return sorted(({"id": a.id, "messages": [
        {"role": "user", "content": f"Write a press release titled: {a.title}"},
        {"role": "assistant", "content": "\n\n".join(a.paragraphs)}]} for a in mirror_articles()),
        key=lambda r: r["id"])


@torch.no_grad()
def perplexity(model, sequences: list[torch.Tensor]) -> float:
    nll = tokens = 0.0
    for ids in sequences:
        ids = ids.to(model.device)
        nll += model(input_ids=ids, labels=ids).loss.item() * (ids.shape[-1] - 1)
        tokens += ids.shape[-1] - 1
    return math.exp(nll / tokens)


def measure(base_dir: Path, work: Path, types: list[str], steps: int, fit: int, heldout: int, seed: int) -> dict:
    params = load_params()
    model, tokenizer = load_base(base_dir, "float32", model_device())
    rows = article_rows()
    write_jsonl(work / "fit.jsonl", rows[:fit])
    write_jsonl(work / "heldout.jsonl", rows[fit:fit + heldout])
    held = calibration_sequences(work / "heldout.jsonl", tokenizer, heldout, 1 << 30, 512)
    targets, head = final_states(model, held), model.get_output_embeddings()
    result = {"base_perplexity": perplexity(model, held), "heldout_tokens": sum(s.shape[-1] for s in held), "types": {}}
    for model_type in types:
        p = params.model.model_copy(update={"type": model_type})
        heal = p.heal.model_copy(update={"method": "lora", "steps": steps})
        seqs = calibration_sequences(work / "fit.jsonl", tokenizer, fit, calibration_budget(model_type, p)[1], 2048)
        plan = make_plan(model_type, p, model, layer_stats(model, seqs), seqs)
        reduced = apply_plan(copy.deepcopy(model), plan)
        row = {"layers": plan["layers_after"], "perplexity": perplexity(reduced, held),
               "kl": mean_kl(reduced, held, targets, head)}
        del reduced
        heal_text = calibration_sequences(work / "fit.jsonl", tokenizer, heal.calibration_docs,
                                          heal.calibration_tokens, 2048)
        start = time.perf_counter()
        healed_plan = heal_plan(model, plan, heal_text, heal, seed)
        row["heal_s"] = round(time.perf_counter() - start, 1)
        healed = apply_plan(copy.deepcopy(model), healed_plan)
        row |= {"healed_perplexity": perplexity(healed, held), "healed_kl": mean_kl(healed, held, targets, head),
                "heal": {k: healed_plan["heal"][k] for k in ("steps", "rank", "lr", "documents", "tokens")}}
        result["types"][model_type] = row
        print(f"{model_type}: {row}", flush=True)
    return result


def table(result: dict) -> str:
    lines = [f"base perplexity {result['base_perplexity']:.2f} on {result['heldout_tokens']} held-out tokens", "",
             "| type | layers | perplexity, none | perplexity, healed | KL, none | KL, healed | heal s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for model_type, r in result["types"].items():
        lines.append(f"| {model_type} | {r['layers']} | {r['perplexity']:,.2f} | {r['healed_perplexity']:,.2f} | "
                     f"{r['kl']:.3f} | {r['healed_kl']:.3f} | {r['heal_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bmw bench heal", description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2-135m-instruct", help="a base.name (the base stage's choices)")
    ap.add_argument("--types", default="pruned,replaceme", help="comma-separated reduced model types")
    ap.add_argument("--steps", type=int, default=100, help="healing steps (model.heal.steps)")
    ap.add_argument("--fit", type=int, default=24, help="articles for calibration and healing")
    ap.add_argument("--heldout", type=int, default=30, help="articles that judge")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args(argv)
    seed = load_params().seed
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base_dir = materialise_base(work / "base", BaseModelParams(name=args.base), seed)
        result = measure(base_dir, work, args.types.split(","), args.steps, args.fit, args.heldout, seed)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
