"""Is an LLM rewrite of a chunk faithful? It may only delete: no added, changed or reordered text."""

from __future__ import annotations

import re

from bmw.filter.chunks import sentences

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def check_faithful(source: str, answer: str, min_keep_ratio: float) -> str | None:
    """None when `answer` is `source` with parts deleted and keeps at least `min_keep_ratio` of its characters;
    otherwise the reason it is not used. Each output sentence must appear in the source after the previous one."""
    src = normalize(source)
    pos = 0
    for unit in map(normalize, sentences(answer)):
        found = src.find(unit, pos)
        if found < 0:
            what = "repeats or reorders" if unit in src else "adds or changes"
            return f"unfaithful: {what} text: {unit[:60]!r}"
        pos = found + len(unit)
    kept = len(normalize(answer)) / max(len(src), 1)
    if kept < min_keep_ratio:
        return f"unfaithful: keeps {kept:.0%} of the text, below filter.min_keep_ratio {min_keep_ratio:.0%}"
    return None
