"""Seeded, spread-out choice of facts from one article, shared by the QA and multiple-choice builders."""

from __future__ import annotations

import random
from collections import Counter
from typing import Callable, Iterable

from bmw.format.facts import Fact
from bmw.io import stable_hash


def seeded_rng(seed: int, *keys: str) -> random.Random:
    """An RNG that depends only on the seed and the keys, so one article's draws ignore every other article."""
    return random.Random(stable_hash(":".join([str(seed), *keys])))


def usable(fact: Fact, min_words: int = 6) -> bool:
    """A fact worth asking about: a full sentence that names the value only once."""
    text = fact.sentence.text
    return len(text.split()) >= min_words and text.count(fact.value) == 1


def spread(
    facts: Iterable[Fact], n: int, rng: random.Random, accept: Callable[[Fact], bool] = usable
) -> list[Fact]:
    """Up to n accepted facts, one per sentence and value, balanced over fact types and paragraphs.

    Greedy: each pick is the fact whose type and paragraph have been picked least so far, ties broken in a
    seeded random order, so questions cover the whole article rather than its first paragraph.
    """
    pool = [f for f in facts if accept(f)]
    rng.shuffle(pool)
    picked: list[Fact] = []
    types: Counter[str] = Counter()
    paragraphs: Counter[int] = Counter()
    seen_sentences: set[int] = set()
    seen_values: set[tuple[str, str]] = set()
    while len(picked) < n:
        options = [f for f in pool if f.sentence.index not in seen_sentences and (f.type, f.key) not in seen_values]
        if not options:
            break
        best = min(options, key=lambda f: (types[f.type], paragraphs[f.sentence.paragraph]))
        picked.append(best)
        types[best.type] += 1
        paragraphs[best.sentence.paragraph] += 1
        seen_sentences.add(best.sentence.index)
        seen_values.add((best.type, best.key))
    return sorted(picked, key=lambda f: (f.sentence.index, f.start))
