"""Page layout of the mirror's PDFs: our own line breaker (with hyphenation) and pagination.

Pure: widths come from the Helvetica metrics fpdf2 ships, so the page count of a release is known without
rendering it, and the renderer only draws the lines placed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fpdf.fonts import CORE_FONTS_CHARWIDTHS

PAGE_W, PAGE_H = 210.0, 297.0  # A4, mm
BODY_X, BODY_RIGHT = 62.0, 188.0  # the text column; the running header sits above it on the left
BODY_TOP, BODY_BOTTOM = 58.0, 270.0  # baselines of body lines stay within these
PT_MM = 25.4 / 72


@dataclass(frozen=True)
class Style:
    font: str  # key of CORE_FONTS_CHARWIDTHS
    size: float  # pt
    leading: float  # mm from one baseline to the next


STYLES = {
    "title": Style("helveticaB", 13, 7.0),
    "heading": Style("helveticaB", 11, 6.6),
    "body": Style("helvetica", 11, 6.6),
    "note": Style("helvetica", 9, 4.8),
}


@dataclass(frozen=True)
class Block:
    text: str
    style: str = "body"
    wrap: bool = True  # False: one line that must fit the column (contact lines, disclaimer lines)
    space_after: float = 1.0  # blank space after the block, in leadings of its style


@dataclass(frozen=True)
class Line:
    text: str
    style: str
    x: float
    y: float  # baseline, mm from the top


@lru_cache(maxsize=65536)
def text_width(text: str, style: str) -> float:
    st = STYLES[style]
    widths = CORE_FONTS_CHARWIDTHS[st.font]
    try:
        units = sum(widths[c] for c in text)
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the core font (latin-1 only): {text!r}") from None
    return units * st.size / 1000 * PT_MM


VOWELS = set("aeiouyäöü")
NO_SPLIT = {"ch", "ck", "sh", "th", "ph", "qu", "gh", "sch"}


def hyphen_points(word: str) -> list[int]:
    """Split positions inside one lower-case word (vowel|consonant-vowel or between two consonants).

    Only plain lower-case words are split, never names, numbers or words that already hold a hyphen, so
    joining "produc-" with "tion" on the next line always restores the word.
    """
    core = word.rstrip(".,;:!?\"")
    if len(core) < 7 or not core.isalpha() or not core.islower():
        return []
    points = []
    for i in range(3, len(core) - 2):
        a, b, c = core[i - 1], core[i], core[i + 1]
        if core[i - 1 : i + 1] in NO_SPLIT or core[i - 2 : i + 1] in NO_SPLIT or core[i : i + 2] in NO_SPLIT:
            continue
        v_cv = a in VOWELS and b not in VOWELS and c in VOWELS
        vc_cv = a not in VOWELS and b not in VOWELS and core[i - 2] in VOWELS and c in VOWELS
        if v_cv or vc_cv:
            points.append(i)
    return points


def next_line(words: list[str], style: str, width: float, hyphenate: bool) -> tuple[str, list[str]]:
    """The next line from `words` (greedy fill) and the words left over."""
    space = text_width(" ", style)  # core fonts have no kerning: widths add up
    line, used, rest = words[0], text_width(words[0], style), words[1:]
    if used > width:
        raise ValueError(f"word wider than the column: {line!r}")
    while rest:
        w = text_width(rest[0], style)
        if used + space + w <= width:
            line, used, rest = f"{line} {rest[0]}", used + space + w, rest[1:]
            continue
        # hyphenate only when it fills a visibly short line, as a typesetter would
        if hyphenate and used < 0.88 * width:
            for i in reversed(hyphen_points(rest[0])):
                if used + space + text_width(f"{rest[0][:i]}-", style) <= width:
                    return f"{line} {rest[0][:i]}-", [rest[0][i:], *rest[1:]]
        break
    return line, rest


def paginate(blocks: list[Block]) -> list[list[Line]]:
    """Place blocks in the body column page by page; a word is never hyphenated across a page break."""
    width = BODY_RIGHT - BODY_X
    pages: list[list[Line]] = [[]]
    y = BODY_TOP
    for block in blocks:
        st = STYLES[block.style]
        if not block.wrap and text_width(block.text, block.style) > width:
            raise ValueError(f"line wider than the column: {block.text!r}")
        words = block.text.split()
        if not words:
            raise ValueError("empty block")
        while words:
            if y > BODY_BOTTOM:
                pages.append([])
                y = BODY_TOP
            last_on_page = y + st.leading > BODY_BOTTOM
            if block.wrap:
                text, words = next_line(words, block.style, width, hyphenate=not last_on_page)
            else:
                text, words = block.text, []
            pages[-1].append(Line(text, block.style, BODY_X, y))
            y += st.leading
        y += st.leading * block.space_after
    return pages
