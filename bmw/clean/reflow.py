"""Paragraphs from the lines of PDF pages: pages stitched, wrapped lines joined, hyphenated words restored."""

from __future__ import annotations

import re

SOFT_HYPHEN = "\u00ad"
SENTENCE_END = re.compile(r"[.!?:…][\"'”’)\]]*$")
FULL_LINE = 0.85  # a line this long, relative to its paragraph's longest, fills the column
HYPHENATED_END = re.compile(r"(?<=\w)-$")
WORD_HEAD = re.compile(r"([^\W\d_]+)-$")  # the letters before a line-end hyphen
WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


class Vocabulary:
    """The words a document spells within its lines, to tell "plug-\\nin" (keep) from "produc-\\ntion"."""

    def __init__(self, lines: list[str]) -> None:
        words = [w.lower() for line in lines for w in WORD.findall(HYPHENATED_END.sub("", line))]
        self.hyphenated = {w for w in words if "-" in w}
        self.plain = {w for w in words if "-" not in w}

    def keeps_hyphen(self, head: str, tail: str) -> bool:
        joined = f"{head}-{tail}".lower()
        return joined in self.hyphenated and joined.replace("-", "") not in self.plain


def join_lines(left: str, right: str, vocabulary: Vocabulary) -> str:
    """`right` appended to `left` as the next line of one paragraph."""
    if left.endswith(SOFT_HYPHEN):
        return left[:-1] + right
    if not HYPHENATED_END.search(left):
        return f"{left} {right}"
    head = WORD_HEAD.search(left)
    tail = WORD.match(right)
    if head is None or tail is None or not right[0].islower():
        return left + right  # "CO2-neutral", "Plug-in-Hybrid": a real hyphen before a number or a noun
    word = head.group(1)
    # "E-mobility", "BMW-owned", "eDrive-based": no typesetter breaks a word after one letter, inside an
    # abbreviation or inside a camel-cased name, so the hyphen is the word's own
    if len(word) == 1 or any(c.isupper() for c in word[1:]) or word.isupper():
        return left + right
    if vocabulary.keeps_hyphen(word, tail.group(0).split("-")[0]):
        return left + right
    return left[:-1] + right


def _ends_paragraph(lines: list[str]) -> bool:
    """Whether the last paragraph so far ends here: it closes a sentence with a line visibly shorter than
    the paragraph's longest (a full last line means the page cut the text, not the paragraph)."""
    run: list[str] = []
    for line in reversed(lines):
        if not line:
            break
        run.append(line)
    last = run[0]
    return bool(SENTENCE_END.search(last)) and (len(run) == 1 or len(last) < FULL_LINE * max(map(len, run)))


def stitch(pages: list[list[str]]) -> tuple[list[str], list[int]]:
    """The pages as one list of lines, an empty line between paragraphs, and the index of each page's first
    line in it. Empty lines at the top or bottom of a page are no gaps; a paragraph runs on across a page break
    unless it ended on the page."""
    out: list[str] = []
    starts: list[int] = []
    for page in pages:
        filled = [i for i, line in enumerate(page) if line]
        if not filled:
            continue
        if out and _ends_paragraph(out):
            out.append("")
        starts.append(len(out))
        out += page[filled[0] : filled[-1] + 1]
    return out, starts


def reflow(lines: list[str]) -> str:
    """Paragraphs (runs of non-empty lines) joined by a blank line, each paragraph's lines into one."""
    vocabulary = Vocabulary(lines)
    paragraphs: list[str] = []
    current: str | None = None
    for line in [*lines, ""]:
        if line:
            current = line if current is None else join_lines(current, line, vocabulary)
        elif current is not None:
            paragraphs.append(current)
            current = None
    return "\n\n".join(paragraphs)
