"""A generative score: each held-out QA question answered greedily, scored by token F1 against its reference answer.

Multiple choice asks the model to rank given answers, which hides what removing layers does to writing one: a model
that can no longer write a sentence still ranks choices near chance, and scores near 0 here. Token F1 is SQuAD's
(lower case, punctuation and the articles a/an/the removed, bag-of-tokens overlap); the thinking of a thinking
model is not scored, only its answer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from bmw.eval.generation import generate, render_prompt
from bmw.models.thinking import mode_name
from bmw.params import EvalParams

ARTICLES = frozenset({"a", "an", "the"})


def answer_tokens(text: str) -> list[str]:
    """Lower-cased words of `text` without punctuation or articles."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return [word for word in re.split(r"\s+", text) if word and word not in ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = answer_tokens(prediction), answer_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def qa_generation(model, tokenizer, items: list[dict], params: EvalParams, system: str | None,
                  seed: int, enable_thinking: bool = False) -> tuple[dict, list[dict]]:
    """({"token_f1": mean, "n"}, one row per item with its greedy answer and F1); answers are cut at
    `eval.max_new_tokens`."""
    rendered = [render_prompt(tokenizer, item["question"], system, enable_thinking) for item in items]
    generations = generate(model, tokenizer, rendered, params, seed=seed, do_sample=False)
    rows = [{"id": item["id"], "mode": mode_name(enable_thinking), "question": item["question"],
             "reference": item["answer"], "answer": g.answer, "thinking": g.thinking, "finished": g.finished,
             "token_f1": round(token_f1(g.answer, item["answer"]), 6)}
            for item, (g,) in zip(items, generations)]
    mean = sum(r["token_f1"] for r in rows) / len(rows) if rows else None
    return {"token_f1": mean, "n": len(rows)}, rows
