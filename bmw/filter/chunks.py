"""Split a document into request-sized chunks without losing a character.

Cuts prefer paragraph breaks, then sentence ends, then any whitespace; a single token longer than a chunk
is cut hard. Each chunk remembers the whitespace that stood before it, so `join_chunks` restores the text.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_SPACE = re.compile(r"\s+")
# Whitespace after a sentence end, optionally behind a closing quote or bracket.
SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")

_WORD, _SENTENCE, _PARAGRAPH = 0, 1, 2


@dataclass(frozen=True)
class Chunk:
    sep: str  # the whitespace that stood before this chunk in the document ("" for the first)
    text: str


def _breaks(text: str) -> list[tuple[int, int, int]]:
    """(start, end, level) of every whitespace run, in order."""
    out = []
    for m in _SPACE.finditer(text):
        if m.group().count("\n") >= 2:
            level = _PARAGRAPH
        elif SENTENCE_BREAK.match(text, m.start()):
            level = _SENTENCE
        else:
            level = _WORD
        out.append((m.start(), m.end(), level))
    return out


def split_text(text: str, max_chars: int) -> list[Chunk]:
    """Chunks of at most `max_chars` characters of `text.strip()`; `join_chunks` gives that back exactly."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    body = text.strip()
    breaks = _breaks(body)
    starts = [b[0] for b in breaks]
    chunks: list[Chunk] = []
    pos, sep = 0, ""
    while pos < len(body):
        limit = pos + max_chars
        if len(body) <= limit:
            chunks.append(Chunk(sep, body[pos:]))
            break
        window = breaks[bisect.bisect_right(starts, pos) : bisect.bisect_right(starts, limit)]
        if window:
            cut, resume, _ = max(window, key=lambda b: (b[2], b[0]))  # strongest break, then the latest
        else:
            cut = resume = limit  # one token longer than a chunk
        chunks.append(Chunk(sep, body[pos:cut]))
        sep, pos = body[cut:resume], resume
    return chunks


def join_chunks(chunks: list[Chunk]) -> str:
    """The chunks' texts, each behind its original separator (none before the first one given)."""
    out = ""
    for chunk in chunks:
        out += (chunk.sep if out else "") + chunk.text
    return out
