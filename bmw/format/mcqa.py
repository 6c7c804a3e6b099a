"""Multiple-choice cloze items from a set of articles: the held-out ones (a control no model can know) or the
training ones (the facts fine-tuning should teach).

One fact of a sentence is masked; the choices are that fact and distractors of the same type (the same unit,
brand, city/country or date grain first) taken from other articles and absent from this one, so exactly one
choice fits. All draws use an RNG seeded per article.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from bmw.format.facts import Fact, extract_facts, normalise
from bmw.format.select import seeded_rng, spread, usable


@dataclass(frozen=True)
class Candidate:
    key: str
    value: str  # one spelling of the value, the same on every run
    type: str
    group: str
    articles: frozenset[str]


def build_pool(facts_by_article: dict[str, list[Fact]]) -> list[Candidate]:
    """Every distinct (type, group, value) in the corpus with the articles that name it, sorted."""
    spellings: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    articles: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for article_id, facts in facts_by_article.items():
        for f in facts:
            spellings[(f.type, f.group, f.key)].add(f.value)
            articles[(f.type, f.group, f.key)].add(article_id)
    return [
        Candidate(key, min(spellings[(t, g, key)]), t, g, frozenset(articles[(t, g, key)]))
        for t, g, key in sorted(spellings)
    ]


class Distractors:
    """Distractor candidates for the facts of one article: values of other articles this article never names."""

    def __init__(self, pool: list[Candidate], article_id: str, text: str) -> None:
        text_key = normalise(text)
        self._by_type: dict[str, list[Candidate]] = defaultdict(list)
        for c in pool:
            if c.articles - {article_id} and c.key not in text_key:
                self._by_type[c.type].append(c)

    def candidates(self, fact: Fact) -> list[Candidate]:
        """Same type, values other than the answer; the fact's own group first."""
        same_type = [c for c in self._by_type[fact.type] if c.key != fact.key]
        ordered = [c for c in same_type if c.group == fact.group] + [c for c in same_type if c.group != fact.group]
        seen: set[str] = set()
        unique = []
        for c in ordered:  # a value may sit in two groups (Singapore: city and country): offer it once
            if c.key not in seen:
                seen.add(c.key)
                unique.append(c)
        return unique

    def draw(self, fact: Fact, k: int, rng: random.Random) -> list[str]:
        options = self.candidates(fact)
        same_group = [c for c in options if c.group == fact.group]
        if len(same_group) >= k:
            chosen = rng.sample(same_group, k)
        else:
            chosen = same_group + rng.sample(options[len(same_group) :], k - len(same_group))
        return [c.value for c in chosen]


def mcqa_question(fact: Fact, title: str) -> str:
    return f'From the BMW Group press release "{title}":\n{fact.masked()}\nWhich {fact.type} fills the blank ____?'


def mcqa_items(
    test_docs: list[dict], all_docs: list[dict], per_article: int, n_choices: int, seed: int
) -> list[dict]:
    """Up to `per_article` items per test article, each with `n_choices` choices and the answer's index."""
    facts = {d["id"]: extract_facts(d["text"]) for d in [*all_docs, *test_docs]}
    pool = build_pool(facts)
    items: list[dict] = []
    for doc in sorted(test_docs, key=lambda d: d["id"]):
        rng = seeded_rng(seed, "mcqa", doc["id"])
        distractors = Distractors(pool, doc["id"], doc["text"])
        title_key = normalise(doc["title"])

        def fits(f: Fact) -> bool:
            # the title must not give the answer away, and enough distractors must exist
            return (
                usable(f)
                and f.key not in title_key
                and f.value not in f.masked()
                and len(distractors.candidates(f)) >= n_choices - 1
            )

        for i, fact in enumerate(spread(facts[doc["id"]], per_article, rng, fits)):
            choices = [fact.value, *distractors.draw(fact, n_choices - 1, rng)]
            rng.shuffle(choices)
            items.append(
                {
                    "id": f"{doc['id']}/mcqa{i:02d}",
                    "article_id": doc["id"],
                    "type": fact.type,
                    "question": mcqa_question(fact, doc["title"]),
                    "choices": choices,
                    "answer": choices.index(fact.value),
                }
            )
    return items
