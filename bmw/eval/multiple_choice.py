"""Log-likelihood scoring as lm-evaluation-harness does it: multiple-choice accuracy and QA log-likelihood.

A choice's score is the summed log-probability of its continuation tokens given the context: the context and
context+continuation are tokenised, the continuation is what the whole has beyond the context's tokens, and
whitespace at the end of the context moves to the continuation (as the harness's `_encode_pair`). `acc` takes the
highest score; `acc_norm` divides each score by the choice's length in characters (the harness's acc_norm).
Scores are always taken with thinking off: the empty think block makes the answer follow the prompt directly.
"""

from __future__ import annotations

import copy

import torch
from tqdm import tqdm

from bmw.eval.generation import render_prompt


def _encode(tokenizer, text: str) -> list[int]:
    bos = tokenizer.bos_token
    return tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) with the continuation cut from the whole's tokenisation."""
    if not context:
        raise ValueError("a log-likelihood request needs a non-empty context")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = _encode(tokenizer, context + continuation)
    ctx = _encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


@torch.no_grad()
def continuation_logprobs(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 8) -> list[list[float]]:
    """Per-token log-probabilities of each continuation given its context (left-truncated to the model's length).

    The choices of a multiple-choice item share their context: it runs once, and its KV cache serves every
    continuation of it, up to `batch_size` at a time. On a CPU, where a forward costs about its token count, that
    scores four choices for the price of little more than one.
    """
    max_len = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            raise ValueError("a continuation tokenised to nothing; there is nothing to score")
        groups.setdefault(tuple(ctx), []).append(i)
    model.eval()
    out: list[list[float]] = [[] for _ in pairs]
    for ctx, members in tqdm(groups.items(), desc="loglikelihood", unit="context", leave=False):
        longest = max(len(pairs[i][1]) for i in members)
        context = list(ctx[-max(1, max_len - longest + 1) :])  # room for the longest continuation
        first = model(input_ids=torch.tensor([context], device=model.device), use_cache=True)
        head = first.logits[0, -1].float().log_softmax(-1)  # predicts each continuation's first token
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            conts = [pairs[i][1] for i in chunk]
            width = max(len(c) for c in conts)
            tails: torch.Tensor | None = None
            if width > 1:  # the later tokens: the continuations (right-padded) on the shared context's cache
                cache = copy.deepcopy(first.past_key_values)
                if len(chunk) > 1:
                    cache.batch_repeat_interleave(len(chunk))
                ids = torch.tensor([c + [0] * (width - len(c)) for c in conts], device=model.device)
                mask = torch.tensor([[1] * (len(context) + len(c)) + [0] * (width - len(c)) for c in conts],
                                    device=model.device)
                tails = model(input_ids=ids, attention_mask=mask, past_key_values=cache).logits.float().log_softmax(-1)
            for row, (i, cont) in enumerate(zip(chunk, conts)):
                lps = [head[cont[0]].item()]
                if len(cont) > 1:
                    positions = torch.arange(len(cont) - 1, device=tails.device)
                    lps += tails[row, positions, torch.tensor(cont[1:], device=tails.device)].tolist()
                out[i] = lps
    return out


def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed log-likelihood, continuation tokens) per (context, continuation) request."""
    token_lps = continuation_logprobs(model, [encode_pair(tokenizer, c, x) for c, x in requests], batch_size)
    return [(float(sum(lps)), len(lps)) for lps in token_lps]


def choice_metrics(logliks: list[float], choices: list[str], answer: int) -> dict:
    """Prediction and correctness by raw and by length-normalised log-likelihood."""
    pred = max(range(len(choices)), key=lambda i: (logliks[i], -i))
    pred_norm = max(range(len(choices)), key=lambda i: (logliks[i] / len(choices[i]), -i))
    return {"pred": pred, "pred_norm": pred_norm, "acc": float(pred == answer), "acc_norm": float(pred_norm == answer)}


def _summary(rows: list[dict]) -> dict:
    n = len(rows)
    return {"acc": sum(r["acc"] for r in rows) / n, "acc_norm": sum(r["acc_norm"] for r in rows) / n, "n": n}


def _check_item(item: dict) -> None:
    choices, answer = item.get("choices"), item.get("answer")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise ValueError(f"mcqa item {item.get('id')!r}: 'choices' must be at least two non-empty strings")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"mcqa item {item.get('id')!r}: 'answer' must index 'choices', got {answer!r}")


def evaluate_mcqa(
    model, tokenizer, items: list[dict], *, system: str | None, batch_size: int = 8
) -> tuple[dict, list[dict]]:
    """mcqa.jsonl items -> ({acc, acc_norm, n, by_type}, per-item rows sorted by id)."""
    if not items:
        raise ValueError("mcqa.jsonl holds no items")
    for item in items:
        _check_item(item)
    contexts = [render_prompt(tokenizer, item["question"], system, enable_thinking=False) for item in items]
    requests = [(ctx, choice) for ctx, item in zip(contexts, items) for choice in item["choices"]]
    scores = iter(loglikelihoods(model, tokenizer, requests, batch_size))
    rows = []
    for item in items:
        logliks = [next(scores)[0] for _ in item["choices"]]
        rows.append({
            "id": item["id"], "article_id": item.get("article_id"), "type": item.get("type"),
            "answer": item["answer"], "logliks": logliks, **choice_metrics(logliks, item["choices"], item["answer"]),
        })
    rows.sort(key=lambda r: r["id"])
    types = sorted({r["type"] for r in rows if r["type"] is not None})
    summary = _summary(rows) | {"by_type": {t: _summary([r for r in rows if r["type"] == t]) for t in types}}
    return summary, rows


def qa_loglik(model, tokenizer, pairs: list[dict], *, system: str | None, batch_size: int = 8) -> dict:
    """Token-weighted mean log-likelihood per token of the reference answers given their questions."""
    if not pairs:
        raise ValueError("qa_reference.jsonl holds no question/answer pairs")
    requests = [(render_prompt(tokenizer, p["question"], system, enable_thinking=False), p["answer"]) for p in pairs]
    scores = loglikelihoods(model, tokenizer, requests, batch_size)
    return {"mean": sum(s for s, _ in scores) / sum(n for _, n in scores), "n": len(pairs),
            "tokens": sum(n for _, n in scores)}
