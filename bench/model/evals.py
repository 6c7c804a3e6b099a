"""Evaluation throughput through the project's own code: sliding-window perplexity and semantic-entropy sampling."""

from __future__ import annotations

import random
import time
from functools import partial

import torch

from bench.model.flops import flops_per_token, mfu
from bench.model.profiling import kernel_time, profiler
from bmw.eval.generation import generate, render_prompt, stop_token_ids
from bmw.eval.perplexity import token_nlls
from bmw.params import EvalParams


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def perplexity_throughput(model, *, window: int, docs: int, batch: int, vocab: int, seed: int = 0) -> dict:
    """Tokens scored per second by `token_nlls` over `docs` one-window documents."""
    rng = random.Random(seed)
    corpus = [[rng.randrange(3, vocab) for _ in range(window)] for _ in range(docs)]
    token_nlls(model, corpus[:batch], window, window, batch_size=batch)  # warm-up: kernels, allocator
    _sync()
    began = time.perf_counter()
    nlls = token_nlls(model, corpus, window, window, batch_size=batch)
    _sync()
    seconds = time.perf_counter() - began
    scored = sum(x is not None for row in nlls for x in row)
    rate = scored / seconds
    flops = flops_per_token(model, "none", window / 2, train=False)  # a window's tokens see window/2 on average
    return {"window": window, "docs": docs, "batch": batch, "tokens_scored": scored, "seconds": round(seconds, 3),
            "tokens_per_s": round(rate, 1), "mfu": round(mfu(rate, flops), 4)}


# the project's loop with `decode`'s ablations of its compiled step: q/k/v and gate/up fused, the choice compiled
PROJECT_ENGINES = {"project": {}, "project-fused": {"fuse_projections": True},
                   "project-choice": {"compile_choice": True},
                   "project-fused-choice": {"fuse_projections": True, "compile_choice": True}}
GEN_ENGINES = (*PROJECT_ENGINES, "hf-static")


def generation_throughput(model, tokenizer, *, prompts: int, samples: int, new_tokens: int,
                          engine: str = "project", profile: bool = False) -> dict:
    """Semantic entropy's sampling step (M samples per prompt, one batch) timed end to end, after a warm-up of the same
    shapes (compilation, CUDA graphs).

    `engine`: "project" times the eval's `generate` (bmw.eval.decode's loop, its step compiled on a GPU), and
    "project-fused", "project-choice", "project-fused-choice" the same with `decode`'s `fuse_projections` and/or
    `compile_choice` (`PROJECT_ENGINES`); "hf-static" the comparison baseline, what the eval did before: transformers'
    `generate` with a static cache (it compiles the decoding step) and every step's logits kept for the sampled tokens'
    log-probabilities. `profile`: the call once more under torch.profiler, after the timed one, and its top kernels
    (with CUDA graphs, the kernels they replay).
    """
    params = EvalParams(max_new_tokens=new_tokens, generation_batch_size=prompts * samples, se_samples=samples,
                        se_prompts=prompts)
    texts = [f"Summarise BMW Group press release number {i} in two sentences." for i in range(prompts)]
    rendered = [render_prompt(tokenizer, t, None, False) for t in texts]
    run = _hf_static if engine == "hf-static" else partial(_project, **PROJECT_ENGINES[engine])
    run(model, tokenizer, rendered, params, samples)
    _sync()
    began = time.perf_counter()
    tokens = run(model, tokenizer, rendered, params, samples)
    _sync()
    seconds = time.perf_counter() - began
    found = {"prompts": prompts, "samples": samples, "max_new_tokens": new_tokens, "engine": engine,
             "generated_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}
    if profile:
        with profiler() as prof:
            run(model, tokenizer, rendered, params, samples)
            _sync()
        busy_ms, top = kernel_time(prof)
        # against the timed call's wall time: the profiler slows the host, not the kernels
        found |= {"top_kernels": top, "kernel_ms": round(busy_ms, 1),
                  "device_busy": round(busy_ms / (1e3 * seconds), 3)}
    return found


def _project(model, tokenizer, rendered: list[str], params: EvalParams, samples: int, **step_options: bool) -> int:
    out = generate(model, tokenizer, rendered, params, seed=0, num_return_sequences=samples, **step_options)
    return sum(len(g.token_ids) for row in out for g in row)


@torch.no_grad()
def _hf_static(model, tokenizer, rendered: list[str], params: EvalParams, samples: int) -> int:
    stops = stop_token_ids(model, tokenizer)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    batch = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    tokenizer.padding_side = side
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=params.max_new_tokens, do_sample=True, temperature=params.temperature,
                         top_p=params.top_p, top_k=0, num_return_sequences=samples, eos_token_id=stops,
                         pad_token_id=tokenizer.pad_token_id, cache_implementation="static",
                         return_dict_in_generate=True, output_logits=True)
    new = out.sequences[:, batch["input_ids"].shape[1]:]
    torch.stack(out.logits, 1).float().log_softmax(-1).gather(-1, new[..., None])  # as the eval did: part of the cost
    return sum(next((i + 1 for i, t in enumerate(row) if t in stops), len(row)) for row in new.tolist())
