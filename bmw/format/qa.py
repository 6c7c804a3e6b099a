"""Questions grounded in one article, answered by a sentence quoted from it."""

from __future__ import annotations

from dataclasses import dataclass

from bmw.format.facts import Fact, extract_facts
from bmw.format.select import seeded_rng, spread

# The question word a figure's unit calls for.
_FIGURE_WH = {
    "percent": "What share",
    "percentage points": "By how much",
    "distance": "How far",
    "speed": "How fast",
    "time": "How long",
    "units": "How many",
    "people": "How many",
    "count": "How many",
    "money": "How much",
}


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str  # a sentence of the article, verbatim
    fact: Fact


def question_for(fact: Fact, title: str) -> str:
    source = f'the BMW Group press release "{title}"'
    if fact.type == "model":
        return f"What does {source} say about the {fact.value}?"
    wh = {"date": "When", "place": "Where"}.get(fact.type) or _FIGURE_WH.get(fact.group, "What figure")
    return f"{wh}? Fill in the blank from {source}: {fact.masked()}"


def qa_pairs(doc: dict, n: int, seed: int) -> list[QAPair]:
    """Up to n question/answer pairs from facts spread over the article's types and paragraphs."""
    facts = spread(extract_facts(doc["text"]), n, seeded_rng(seed, "qa", doc["id"]))
    return [QAPair(question_for(f, doc["title"]), f.sentence.text, f) for f in facts]
