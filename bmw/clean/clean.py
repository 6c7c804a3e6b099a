"""`clean_text`: raw page text in, clean paragraphs and what was removed out. Pure."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from bmw.clean.pdf import PAGE_BREAK
from bmw.clean.reflow import reflow, stitch
from bmw.clean.rules import (
    RULE_NAMES,
    paragraphs,
    strip_boilerplate,
    strip_page_furniture,
)
from bmw.params import CleanParams

LIGATURES = {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
# Ligatures spelled out; NUL and the other control characters (broken font encodings yield them) dropped:
# a NUL would survive JSON but not most tools downstream.
NORMALISE = str.maketrans(LIGATURES | {chr(c): None for c in (*range(32), 127) if chr(c) not in "\t\n\r\f\v"})
SOFT_HYPHEN_INSIDE = re.compile("\u00ad(?=.)")  # invisible inside a line; at its end it marks a word break
TITLE_RULE = "title"
ALL_RULES = tuple(sorted((*RULE_NAMES, TITLE_RULE)))


@dataclass(frozen=True)
class CleanStats:
    chars_in: int  # non-whitespace characters, so layout padding is neither input nor "removed"; never below chars_out
    chars_out: int
    rules: dict[str, int] = field(default_factory=dict)  # lines removed per rule, every rule named

    @property
    def removed_share(self) -> float:
        return round(1 - self.chars_out / self.chars_in, 4) if self.chars_in else 0.0

    def as_dict(self) -> dict:
        return {"chars_in": self.chars_in, "chars_out": self.chars_out, "removed_share": self.removed_share,
                "rules": dict(self.rules)}


@dataclass(frozen=True)
class CleanResult:
    text: str  # paragraphs joined by "\n\n"
    stats: CleanStats


def _visible_chars(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def _lines(page: str) -> list[str]:
    return [SOFT_HYPHEN_INSIDE.sub("", " ".join(line.split())) for line in page.translate(NORMALISE).splitlines()]


def _squash(text: str) -> str:
    return re.sub(r"[\s\-\u00ad]", "", text).casefold()


def _drop_title(lines: list[str], title: str) -> int:
    """Remove the first paragraph when it repeats the title (however it wrapped): lines removed."""
    spans = paragraphs(lines)
    if not spans or _squash(" ".join(lines[i] for i in spans[0])) != _squash(title):
        return 0
    del lines[spans[0].start : spans[0].stop]
    return len(spans[0])


def clean_text(raw: str, title: str | None = None) -> CleanResult:
    """Boilerplate removed line by line, paragraphs rebuilt. `raw` holds pages separated by a form feed,
    each with one line per text line and an empty line at a paragraph gap; `title`, when given, is dropped
    from the top of the text, where PDFs repeat it as a headline."""
    counts: Counter[str] = Counter()
    pages = []
    for number, page in enumerate(raw.split(PAGE_BREAK), 1):
        kept, removed = strip_page_furniture(_lines(page), number)
        pages.append(kept)
        counts += removed
    lines, removed = strip_boilerplate(*stitch(pages))
    counts += removed
    if title:
        counts[TITLE_RULE] += _drop_title(lines, title)
    text = reflow(lines)
    rules = {name: counts[name] for name in ALL_RULES}
    # counted after NORMALISE: a ligature is two or three characters out, so it counts as that many in
    return CleanResult(text, CleanStats(_visible_chars(raw.translate(NORMALISE)), _visible_chars(text), rules))


def rejection(result: CleanResult, params: CleanParams) -> str | None:
    """Why a cleaned text must not be used (the guard against over-cleaning, too short), or None."""
    share = result.stats.removed_share
    if share > params.max_removed_share:
        return f"over-cleaned: removed {share:.1%} > {params.max_removed_share * 100:g}%"
    if len(result.text) < params.min_chars:
        return f"too short: {len(result.text)} chars < {params.min_chars}"
    return None
