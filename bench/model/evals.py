"""Evaluation throughput through the project's own code: sliding-window perplexity and semantic-entropy sampling."""

from __future__ import annotations

import random
import time

import torch

from bench.model.flops import flops_per_token, mfu
from bmw.eval.generation import generate, render_prompt
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


def generation_throughput(model, tokenizer, *, prompts: int, samples: int, new_tokens: int,
                          cache: str | None = None) -> dict:
    """Semantic entropy's sampling step (`generate`: M samples per prompt, KV cache, one batch) timed end to end.

    `cache`: a transformers cache implementation ("static" compiles the decoding step), None for the dynamic one.
    """
    params = EvalParams(max_new_tokens=new_tokens, batch_size=prompts * samples, se_samples=samples,
                        se_prompts=prompts)
    texts = [f"Summarise BMW Group press release number {i} in two sentences." for i in range(prompts)]
    rendered = [render_prompt(tokenizer, t, None, False) for t in texts]
    model.generation_config.cache_implementation = cache
    warm = params.model_copy(update={"max_new_tokens": 4 if cache is None else new_tokens})
    generate(model, tokenizer, rendered, warm, seed=0, num_return_sequences=samples)
    _sync()
    began = time.perf_counter()
    out = generate(model, tokenizer, rendered, params, seed=0, num_return_sequences=samples)
    _sync()
    seconds = time.perf_counter() - began
    tokens = sum(len(g.token_ids) for row in out for g in row)
    model.generation_config.cache_implementation = None
    return {"prompts": prompts, "samples": samples, "max_new_tokens": new_tokens, "cache": cache or "dynamic",
            "generated_tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}
