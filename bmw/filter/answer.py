"""Parse a model's JSON verdict defensively: code fences, leading prose and stray braces are tolerated."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal


class MalformedAnswer(ValueError):
    """The model's answer holds no usable verdict."""


@dataclass(frozen=True)
class Answer:
    decision: Literal["keep", "reject"]
    text: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def _verdict_object(content: str) -> dict:
    """The first JSON object in `content` that has a "decision" key."""
    decoder = json.JSONDecoder()
    start = content.find("{")
    while start >= 0:
        try:
            obj, _ = decoder.raw_decode(content, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "decision" in obj:
            return obj
        start = content.find("{", start + 1)
    raise MalformedAnswer("no JSON object with a 'decision' in the answer")


def parse_answer(content: str | None) -> Answer:
    if not content or not content.strip():
        raise MalformedAnswer("empty answer")
    return answer_from_dict(_verdict_object(content))


def answer_from_dict(obj: dict) -> Answer:
    """Validate a verdict object (from the model, or read back from the cache)."""
    if "decision" not in obj:
        raise MalformedAnswer("no 'decision' in the answer")
    decision = obj["decision"].strip().lower() if isinstance(obj["decision"], str) else obj["decision"]
    if decision not in ("keep", "reject"):
        raise MalformedAnswer(f"decision {obj['decision']!r} is not 'keep' or 'reject'")
    text = obj.get("text") or ""
    reason = obj.get("reason") or ""
    if not isinstance(text, str) or not isinstance(reason, str):
        raise MalformedAnswer("'text' and 'reason' must be strings")
    if decision == "keep" and not text.strip():
        raise MalformedAnswer("'keep' without a text")
    return Answer(decision, text, reason)

