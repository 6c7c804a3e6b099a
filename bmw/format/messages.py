"""Qwen3 ChatML `messages` rows: `instruct` (title -> article) and `qa` (grounded question -> quoted sentence)."""

from __future__ import annotations

from bmw.format.qa import qa_pairs
from bmw.params import FormatParams

ROLES = ("system", "user", "assistant")


def instruct_prompt(title: str) -> str:
    return f"Tell me about: {title}"


def conversation(system_prompt: str, user: str, assistant: str) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ]


def instruct_rows(doc: dict, system_prompt: str) -> list[dict]:
    messages = conversation(system_prompt, instruct_prompt(doc["title"]), doc["text"])
    return [{"id": f"{doc['id']}/instruct", "style": "instruct", "messages": messages}]


def qa_rows(doc: dict, system_prompt: str, n: int, seed: int) -> list[dict]:
    return [
        {"id": f"{doc['id']}/qa{i:02d}", "style": "qa", "messages": conversation(system_prompt, p.question, p.answer)}
        for i, p in enumerate(qa_pairs(doc, n, seed))
    ]


def rows_for(doc: dict, fmt: FormatParams, seed: int) -> list[dict]:
    """The rows of one article in the configured style(s)."""
    rows: list[dict] = []
    if fmt.style in ("instruct", "both"):
        rows += instruct_rows(doc, fmt.system_prompt)
    if fmt.style in ("qa", "both"):
        rows += qa_rows(doc, fmt.system_prompt, fmt.qa_per_article, seed)
    return rows
