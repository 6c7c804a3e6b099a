"""`bmw bench`: time the project's training and evaluation at a shape, next to TRL's defaults, tuned TRL and Unsloth;
write JSON.

bmw bench model --shape qwen3-8b --methods lora,full --types original,dropped,pruned,laco \
    --seq 4096 --steps 30 --warmup 5 --out $OUT/bench.json
Under `accelerate launch` each process trains on its GPU (`--distributed lora=ddp,full=fsdp` sets the project
runs' train.distributed); rank 0 writes the JSON. Unsloth's runs (`--baselines ...,unsloth`) come last, each in a
child process with its own environment (bench.model.unsloth_peer).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

from bench.model.curves import compare, curve_runs, plot
from bench.model.evals import GEN_ENGINES, generation_throughput, perplexity_throughput
from bench.model.shapes import SHAPES, TYPES, build_model
from bench.model.train import PEERS, RunSpec, compiled, patches_liger, run_training
from bench.model.unsloth_peer import SITE, run_unsloth
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.io import write_json
from bmw.train.config import FP8_RECIPES
from bmw.train.launch import is_main_process, world_size

log = logging.getLogger("bench.model")


PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "liger-kernel", "datasets")


def environment(device: torch.device, packages: tuple[str, ...] = PACKAGES) -> dict:
    versions = {}
    for pkg in packages:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    # the caching allocator's settings change full fine-tuning's speed on an 80 GB card (docs/benchmarks.md)
    env = {"versions": versions, "device": device.type, "processes": world_size(),
           "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    if device.type == "cuda":
        env |= {"cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(device),
                "gpus": torch.cuda.device_count()}
    return env


def plan_runs(a: argparse.Namespace) -> list[RunSpec]:
    """TRL's defaults, tuned TRL, each method's project path as the train stage runs it (`train.compile: auto`: its
    layers compiled on one CUDA GPU) and its ablations, the other attentions, the other model types (LoRA only by
    default) and the FP8 runs, then Unsloth's, in a process of its own each. Liger's kernels patch transformers' Qwen3
    classes and functions process-wide, so every run that turns them on (tuned TRL, the eager project path on CUDA)
    is moved after every run that does not, the order otherwise kept.
    `--loss-curve`: the loss-curve runs instead (curves.py)."""
    common = {m: {"method": m, "shape": a.shape, "seq": a.seq, "steps": a.steps, "warmup": a.warmup,
                  "batch": a.full_batch if m == "full" else a.batch} for m in a.methods}
    project = {m: {**common[m], "mode": "project", "distributed": a.distributed.get(m, "none"), "save": a.save}
               for m in a.methods}
    if a.loss_curve:
        runs = curve_runs([RunSpec(attn=a.attn[0], **project[m]) for m in a.methods], a.loss_curve,
                          a.fp8_recipes if a.ablate_fp8 or not a.ablate_compile else [], a.ablate_compile)
        return sorted(runs, key=patches_liger)
    runs = [RunSpec(mode="defaults", profile=a.profile, **common[m]) for m in a.methods if "defaults" in a.baselines]
    runs += [RunSpec(mode="tuned", attn=attn, profile=a.profile, **common[m])
             for m in a.methods for attn in a.tuned_attn if "tuned" in a.baselines]
    runs += [RunSpec(attn=a.attn[0], profile=a.profile, **project[m]) for m in a.methods]
    if a.ablate_compile:  # the other setting of train.compile than auto's here, with the FP8 recipes too
        runs += [RunSpec(attn=a.attn[0], compile=not compiled(RunSpec(attn=a.attn[0], **project[m])), fp8=r,
                         profile=a.profile, **project[m])
                 for m in a.methods for r in [None, *(a.fp8_recipes if a.ablate_fp8 else [])]]
    if a.ablate_liger:
        runs += [RunSpec(attn=a.attn[0], liger=False, compile=False, **project[m]) for m in a.methods]
    if a.ablate_casts and "lora" in a.methods:
        runs.append(RunSpec(attn=a.attn[0], adapter_casts=True, **project["lora"]))
    if a.ablate_fused and "lora" in a.methods:
        runs.append(RunSpec(attn=a.attn[0], unfused=True, **project["lora"]))
    if a.ablate_chunked_loss:
        runs += [RunSpec(attn=a.attn[0], chunked_loss=True, **project[m]) for m in a.methods]
    runs += [RunSpec(attn=attn, **project[m]) for m in a.methods for attn in a.attn[1:]]
    runs += [RunSpec(type=t, attn=a.attn[0], **project[m])
             for m in a.methods if m in a.type_methods for t in a.types if t != "original"]
    if a.ablate_fp8:
        runs += [RunSpec(attn=a.attn[0], fp8=r, profile=a.profile, **project[m])
                 for m in a.methods for r in a.fp8_recipes]
    if a.ablate_recast and "lora" in a.methods:
        runs += [RunSpec(attn=a.attn[0], fp8=r, recast=True, profile=a.profile, **project["lora"])
                 for r in a.fp8_recipes]
    runs += [RunSpec(mode="unsloth", **common[m]) for m in a.methods if "unsloth" in a.baselines]
    return sorted(runs, key=lambda r: (r.mode == "unsloth", patches_liger(r)))


def table(results: dict) -> str:
    """The short text table printed last (the full figures are in the JSON): each run's tokens/s against TRL's
    defaults and against the fastest of the peers that ran (TRL's defaults, tuned TRL, Unsloth) for its method."""
    lines = [f"{'run':<40} {'tok/s':>10} {'MFU':>6} {'peak GiB':>9} {'x TRL defaults':>14} {'x best peer':>11}"]
    defaults, best = {}, {}
    for r in results["train"]:
        if r["mode"] in PEERS and r.get("tokens_per_s"):
            best[r["method"]] = max(best.get(r["method"], 0.0), r["tokens_per_s"])
            if r["mode"] == "defaults":
                defaults[r["method"]] = r["tokens_per_s"]
    for r in results["train"]:
        if "error" in r:
            lines.append(f"{r['run']:<40} {r['error'][:60]}")
            continue
        ratios = [r["tokens_per_s"] / peer[r["method"]] if peer.get(r["method"]) else float("nan")
                  for peer in (defaults, best)]
        lines.append(f"{r['run']:<40} {r['tokens_per_s']:>10.0f} {r['mfu']:>6.1%} "
                     f"{r.get('peak_memory_gib', float('nan')):>9.1f} {ratios[0]:>14.2f} {ratios[1]:>11.2f}")
    for name, e in results.get("eval", {}).items():
        lines.append(f"{'eval/' + name:<40} {e.get('tokens_per_s', 0):>10.0f} {e.get('seconds', 0):>6.1f}s "
                     f"{e.get('error', '')[:40]}")
    lines += [f"{name:<40} skipped (--budget-s)" for name in results.get("skipped", [])]
    for s in results.get("loss_curve", {}).values():
        noise = "failed" if s["noise"] is None else f"{s['noise']:.4f}"
        lines += [f"{name:<40} mean |loss - bf16's| {s['mean_abs_diff'][name]:.4f}, bf16 reseeded {noise} "
                  f"(last {s['window']} steps): {'within' if within else 'outside'} the noise"
                  for name, within in s["within_noise"].items()]
    return "\n".join(lines)


def run_eval(a: argparse.Namespace, device: torch.device) -> dict:
    tokenizer = load_tiny_tokenizer()
    model = build_model(a.shape, "original", device)[0].eval()
    found: dict = {}
    jobs = {"perplexity": lambda: perplexity_throughput(model, window=a.window, docs=a.ppl_docs, batch=a.ppl_batch,
                                                        vocab=len(tokenizer))}
    for engine in a.gen_engine:
        jobs[f"semantic_entropy_sampling_{engine}"] = lambda engine=engine: generation_throughput(
            model, tokenizer, prompts=a.se_prompts, samples=a.se_samples, new_tokens=a.new_tokens, engine=engine,
            profile=a.profile)
    for name, job in jobs.items():
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            found[name] = job()
            if device.type == "cuda":
                found[name]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        except Exception as e:
            log.exception("eval %s failed", name)
            found[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        log.info("eval %s: %s", name, found[name])
    return found


def _csv(choices):
    def parse(text: str) -> list[str]:
        items = [x for x in text.split(",") if x]
        bad = [x for x in items if choices and x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a comma list of {', '.join(choices)}")
        return items
    return parse


def _strategies(text: str) -> dict[str, str]:
    items = text.split(",")
    pairs = dict(item.split("=", 1) for item in items if "=" in item)
    if len(pairs) != len(items) or any(m not in ("lora", "full") or s not in ("ddp", "fsdp") for m, s in pairs.items()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected method=strategy pairs, e.g. lora=ddp,full=fsdp")
    return pairs


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bmw bench model", description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=SHAPES, default="tiny")
    p.add_argument("--methods", type=_csv(("lora", "full")), default=["lora", "full"])
    p.add_argument("--types", type=_csv(TYPES), default=["original"], help="model types to time (model.type)")
    p.add_argument("--attn", type=_csv(("auto", "sdpa", "flex_attention", "eager")), default=["auto"],
                   help="attention(s) of the project's packed runs (auto: the project's choice); the first is used "
                        "for the other types")
    p.add_argument("--tuned-attn", type=_csv(("auto", "sdpa", "flex_attention", "eager")), default=["auto"],
                   help="attention(s) of tuned TRL's padding-free runs (auto: flex on CUDA, SDPA on a CPU)")
    p.add_argument("--type-methods", type=_csv(("lora", "full")), default=["lora"],
                   help="methods whose runs are repeated for each of --types")
    p.add_argument("--profile", action="store_true",
                   help="top kernels of warm-up steps 3-4 of each baseline, fast-path and FP8 run (needs --warmup "
                        ">= 5), and of one more call of each decoding engine")
    p.add_argument("--ablate-liger", action="store_true",
                   help="also run the project's path eager (train.compile: false) without Liger's kernels")
    p.add_argument("--ablate-casts", action="store_true",
                   help="also run the LoRA fast path with PEFT's casts of adapter inputs to fp32 (its default)")
    p.add_argument("--ablate-chunked-loss", action="store_true",
                   help="also run the project's path with TRL's chunked LM-head loss (on a CPU it uses the logits')")
    p.add_argument("--ablate-fused", action="store_true",
                   help="also run the LoRA fast path with PEFT's own update (scale and add outside the GEMM)")
    p.add_argument("--ablate-compile", action="store_true",
                   help="also run the project's path with the other setting of train.compile than auto's here: eager "
                        "(with Liger's kernels) where auto compiles the decoder layers (one CUDA GPU), compiled where "
                        "it does not; with each FP8 recipe too under --ablate-fp8")
    p.add_argument("--ablate-fp8", action="store_true",
                   help="also run the project's path with FP8 linears (train.fp8), once per --fp8-recipes")
    p.add_argument("--ablate-recast", action="store_true",
                   help="also run LoRA with FP8 linears that cast the frozen base weights at each use, not once")
    p.add_argument("--fp8-recipes", type=_csv(FP8_RECIPES), default=[FP8_RECIPES[0]],
                   help="torchao float8 recipe(s) of the FP8 runs (train.fp8 uses tensorwise)")
    p.add_argument("--loss-curve", type=int, default=0, metavar="N",
                   help="instead of the timing runs: N steps per method on bigram data in bf16, with FP8 (or, under "
                        "--ablate-compile, with the other setting of train.compile; both with --ablate-fp8 too) and "
                        "in bf16 reseeded (the noise), every step's loss in the JSON and a PNG beside it")
    p.add_argument("--curve-window", type=int, default=50, help="last steps the loss curves are compared over")
    p.add_argument("--distributed", type=_strategies, default={},
                   help="under accelerate launch: train.distributed per method, e.g. lora=ddp,full=fsdp")
    p.add_argument("--save", action="store_true",
                   help="after each project run, gather (FSDP) and write the variant as the train stage does, timed")
    p.add_argument("--budget-s", type=float, default=float("inf"),
                   help="start no further training run after this many seconds (the rest are listed as skipped)")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=2, help="sequences of --seq tokens per step per GPU (LoRA)")
    p.add_argument("--full-batch", type=int, default=1, help="the same for full fine-tuning")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps after the warm-up")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--baselines", type=_csv(PEERS), default=["defaults", "tuned"],
                   help="peers to time each method against: TRL's defaults, TRL as its documentation recommends for "
                        "speed (padding-free packing, Liger, no activation checkpointing), Unsloth likewise (in its "
                        "own environment: --unsloth-site; not by default)")
    p.add_argument("--unsloth-python", default=sys.executable, help="the interpreter of Unsloth's runs")
    p.add_argument("--unsloth-site", default=SITE,
                   help="put first on the PYTHONPATH of Unsloth's runs: where `gpu_wheels.py install --env unsloth` "
                        "put its packages ('' for none: an --unsloth-python venv that has them)")
    p.add_argument("--no-baseline", dest="baselines", action="store_const", const=[], help="no peer runs")
    p.add_argument("--no-train", dest="train", action="store_false")
    p.add_argument("--no-eval", dest="eval", action="store_false")
    p.add_argument("--window", type=int, default=256, help="perplexity window (tokens)")
    p.add_argument("--ppl-docs", type=int, default=8)
    p.add_argument("--ppl-batch", type=int, default=4)
    p.add_argument("--se-prompts", type=int, default=5)
    p.add_argument("--se-samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=512)
    p.add_argument("--gen-engine", type=_csv(GEN_ENGINES), default=["project"],
                   help="decoder(s) to time sampling with: the eval's own loop (project; -fused: q/k/v and gate/up "
                        "one GEMM each, -choice: the token's choice compiled too), and/or transformers' generate with "
                        "a static cache (hf-static: what the eval used before)")
    p.add_argument("--out", default="bench.json")
    a = p.parse_args(argv)
    if a.seq < 16 or a.steps < 1 or a.warmup < 1:
        p.error("--seq must be >= 16, --steps and --warmup >= 1")
    if a.loss_curve and (a.loss_curve <= a.warmup or a.curve_window < 1):
        p.error("--loss-curve must exceed --warmup (the steps of a curve include them), --curve-window be >= 1")
    if "unsloth" in a.baselines and world_size() > 1:
        p.error("--baselines unsloth: Unsloth's runs take one GPU, in a single process; not under accelerate launch")
    return a


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    a = parse_args(sys.argv[1:] if argv is None else argv)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    results: dict = {"environment": environment(device), "args": {k: v for k, v in vars(a).items() if k != "out"},
                     "train": [], "eval": {}}
    began = time.perf_counter()
    if a.eval and is_main_process():  # first: short, and before Liger patches anything
        results["eval"] = run_eval(a, device)
    for spec in plan_runs(a) if a.train else []:
        if time.perf_counter() - began > a.budget_s:
            results["skipped"] = results.get("skipped", []) + [spec.name]
            continue
        log.info("run %s", spec.name)
        if spec.mode == "unsloth":  # its own process, killed where it would outrun the budget
            left = a.budget_s - (time.perf_counter() - began)
            results["train"].append(run_unsloth(spec, a.unsloth_python, a.unsloth_site,
                                                None if math.isinf(left) else left))
        else:
            results["train"].append(run_training(spec, device))
        log.info("done %s: %s", spec.name, results["train"][-1])
    results["wall_s"] = round(time.perf_counter() - began, 1)
    if a.loss_curve:
        results["loss_curve"] = compare(results["train"], a.curve_window)
    if is_main_process():
        write_json(a.out, results)
        if a.loss_curve:
            plot(results["train"], results["loss_curve"], Path(a.out).with_suffix(".png"))
        print(table(results))


if __name__ == "__main__":
    main()
