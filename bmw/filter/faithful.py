"""Is an LLM rewrite of a chunk faithful? It may only delete whole lines and sentences: no added, changed,
reordered or partly deleted text.

The comparison is by words, not characters or lines: each sentence of the answer (its paragraphs split at
sentence ends; a single line break is a space) must be a run of whole words of the source that starts and ends
where a source line or sentence does, after the run matched before it. An answer that turns "The car is not" /
"fast." into "The car is" / "fast." is caught, although each of its lines appears in the source.
"""

from __future__ import annotations

import re

from bmw.filter.chunks import SENTENCE_BREAK

_SPACE = re.compile(r"\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]?$")  # where chunks.SENTENCE_BREAK splits


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _source_words(source: str) -> tuple[list[str], set[int]]:
    """The source's words and the positions where a line or a sentence starts (the end counts as one)."""
    words: list[str] = []
    starts: set[int] = set()
    for line in source.splitlines():
        starts.add(len(words))
        for word in line.split():
            words.append(word)
            if _SENTENCE_END.search(word):
                starts.add(len(words))
    starts.add(len(words))
    return words, starts


def _answer_sentences(answer: str) -> list[str]:
    return [s for paragraph in _PARAGRAPH_BREAK.split(answer) for s in SENTENCE_BREAK.split(normalize(paragraph)) if s]


def _runs(unit: list[str], words: list[str], starts: set[int]) -> list[int]:
    """Where `unit` occurs in `words` as a run that starts and ends at a line or sentence."""
    k = len(unit)
    return [i for i in sorted(starts) if i + k in starts and words[i : i + k] == unit]


def _subsequence(unit: list[str], words: list[str]) -> bool:
    remaining = iter(words)
    return all(word in remaining for word in unit)


def check_faithful(source: str, answer: str, min_keep_ratio: float) -> str | None:
    """None when `answer` is `source` with whole lines or sentences deleted and keeps at least `min_keep_ratio` of
    its characters; otherwise the reason it is not used."""
    words, starts = _source_words(source)
    pos = 0
    for text in _answer_sentences(answer):
        unit = text.split()
        found = [i for i in _runs(unit, words, starts) if i >= pos]
        if not found:
            if _runs(unit, words, starts):
                what = "repeats or reorders text"
            elif _subsequence(unit, words):
                what = "drops words inside a sentence"
            else:
                what = "adds or changes text"
            return f"unfaithful: {what}: {text[:60]!r}"
        pos = found[0] + len(unit)
    kept = len(normalize(answer)) / max(len(normalize(source)), 1)
    if kept < min_keep_ratio:
        return f"unfaithful: keeps {kept:.0%} of the text, below filter.min_keep_ratio {min_keep_ratio:.0%}"
    return None
