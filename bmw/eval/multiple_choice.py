"""Log-likelihood scoring as lm-evaluation-harness does it: multiple-choice accuracy and QA log-likelihood.

A choice's score is the summed log-probability of its continuation tokens given the context: the context and
context+continuation are tokenised, the continuation is what the whole has beyond the context's tokens, and
whitespace at the end of the context moves to the continuation (as the harness's `_encode_pair`). `acc` takes the
highest score; `acc_norm` divides each score by the choice's length in characters (the harness's acc_norm).
Scores are always taken with thinking off: the empty think block makes the answer follow the prompt directly.
"""

from __future__ import annotations

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

    Contexts run once, `batch_size` at a time, and their KV cache serves every continuation of theirs: the choices
    of a multiple-choice item share one context, so four choices cost little more than one. Contexts are
    right-padded; the continuations' positions and attention mask skip the padding.
    """
    max_len = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            raise ValueError("a continuation tokenised to nothing; there is nothing to score")
        groups.setdefault(tuple(ctx), []).append(i)
    items = list(groups.items())
    model.eval()
    device = model.device
    out: list[list[float]] = [[] for _ in pairs]
    for start in tqdm(range(0, len(items), batch_size), desc="loglikelihood", unit="batch", leave=False):
        chunk = items[start : start + batch_size]
        contexts = []
        for ctx, members in chunk:  # room for the group's longest continuation
            longest = max(len(pairs[i][1]) for i in members)
            contexts.append(list(ctx[-max(1, max_len - longest + 1) :]))
        lengths = [len(c) for c in contexts]
        width = max(lengths)
        first = model(
            input_ids=torch.tensor([c + [0] * (width - len(c)) for c in contexts], device=device),
            attention_mask=torch.tensor([[1] * n + [0] * (width - n) for n in lengths], device=device),
            use_cache=True,
        )
        last = torch.tensor([n - 1 for n in lengths], device=device)
        heads = first.logits[torch.arange(len(chunk), device=device), last].float().log_softmax(-1)
        rows = [(g, i) for g, (_, members) in enumerate(chunk) for i in members]  # one row per continuation
        conts = [pairs[i][1] for _, i in rows]
        tails = None
        span = max(len(c) for c in conts) - 1
        if span > 0:  # the continuations' later tokens, on their context's cache
            cache = first.past_key_values
            cache.batch_select_indices(torch.tensor([g for g, _ in rows], device=device))
            ids = torch.tensor([c[:-1] + [0] * (span - len(c) + 1) for c in conts], device=device)
            mask = [[1] * lengths[g] + [0] * (width - lengths[g]) + [1] * (len(c) - 1) + [0] * (span - len(c) + 1)
                    for (g, _), c in zip(rows, conts)]
            positions = torch.tensor([[lengths[g] + j for j in range(span)] for g, _ in rows], device=device)
            tails = model(input_ids=ids, attention_mask=torch.tensor(mask, device=device), position_ids=positions,
                          past_key_values=cache).logits.float().log_softmax(-1)
        for r, ((g, i), cont) in enumerate(zip(rows, conts)):
            lps = [heads[g, cont[0]].item()]
            if len(cont) > 1:
                at = torch.arange(len(cont) - 1, device=device)
                lps += tails[r, at, torch.tensor(cont[1:], device=device)].tolist()
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
