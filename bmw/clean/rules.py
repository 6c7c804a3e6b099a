"""Named boilerplate rules of press-release PDFs, and the engine that applies them.

Lines are whitespace-normalised; an empty line is a paragraph gap. Every rule matches one whole line
(`fullmatch`; no DOTALL, no MULTILINE). Page rules remove running headers and footers page by page; the
other rules run over the pages stitched into one document. A block rule removes from its start line - the
first line of a paragraph or of a page - to the end of that paragraph, or - for a heading standing alone - the
one paragraph after it: never more, so no rule can run on to the end of a page. A card rule removes one
paragraph whose lines all look like a contact card. Each removed line is counted once, for the first rule that
removes it.

A pattern alone would also match ordinary prose ("Subject of the agreement is ...", "The figures for the first
half show that CO2 emissions fell ...", a sentence ending in "www.bmwgroup.com."), so each rule is anchored
as well: on its position (page edges, the start of a paragraph), on the block it sits in (a header block, a
paragraph naming the test procedure) or on its shape (a consumption figure with its unit).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

EDGE_LINES = 8  # running headers and footers sit within this many lines of a page's top or bottom
# "<page number> <section>" or "<section> <page number>"
RUNNING_HEADER = re.compile(r"(?P<n>\d{1,3})\s+[^\W\d_].{0,60}|[^\W\d_].{0,60}?\s(?P<m>\d{1,3})")


def _any(*alternatives: str, tail: str = "", flags: int = 0) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(alternatives) + ")" + tail, flags)


@dataclass(frozen=True)
class LineRule:
    name: str
    pattern: re.Pattern[str]  # must match the whole line
    edge: int | None = None  # only within this many lines of the top or bottom of a page
    # only in a header or footer block (its paragraph holds a strong header line, or nothing but furniture),
    # and never as a line that ends a sentence: "Subject <title>" in the header, not "Subject of the agreement ..."
    in_block: bool = False
    # a match that ends a sentence begun on the line before (same paragraph) is that sentence's tail, not a line
    # of its own: "... is available at" / "www.bmwgroup.com."
    ends_prose: bool = False


@dataclass(frozen=True)
class BlockRule:
    name: str
    start: re.Pattern[str]  # the first line of the paragraph that is the block
    heading: bool = False  # a start line that is a paragraph of its own heads the next paragraph: remove both
    requires: re.Pattern[str] | None = None  # the block's text must also contain this (searched)


@dataclass(frozen=True)
class CardRule:
    name: str
    key: re.Pattern[str]  # some line of the paragraph matches this
    line: re.Pattern[str]  # and every line of it matches this


NOCASE = re.IGNORECASE
CO2 = r"CO\s?[2₂]"
MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
         r"|Januar|Februar|März|Mai|Juni|Juli|Oktober|Dezember)")
PHONE = _any(
    r"(?:(?:Tele(?:phone|fon)|Tel|Phone|Mobile?|Cell|Telefax|Fax)\.?\s*:?|[TMF]\s*:)\s*\+?\(?\d[\d\s()/.\-–]{5,}\d",
    r"\+\s?\d[\d\s()/.\-–]{5,}\d",
    flags=NOCASE,
)
EMAIL = _any(r"(?:E-?mail|Mail)\s*:?\s*\S+@\S+", r"\S+@[\w-]+(?:\.[\w-]+)+", flags=NOCASE)
SHORT_NON_SENTENCE = re.compile(r"(?=.{1,80}$).*[^.!?,;]")  # a card line: short, not a sentence
SENTENCE_END = re.compile(r".*[.!?][\"'”’)\]]*")
# what a disclaimer line states: a consumption, emission or range figure with its unit, or an efficiency class
CONSUMPTION_FIGURE = r"(?=.*(?:\d\s*(?:l/100\s?km|kWh/100\s?km|g/km|Wh/km|km|kWh|mpg)\b|(?:class|Klasse)\b[^:]*:\s*[A-G]\b))"
# how the figures of a disclaimer paragraph were obtained; a prose paragraph quoting figures names no procedure
TEST_PROCEDURE = re.compile(r"\b(?:WLTP|NEDC|NEFZ|determined|measured|calculated|procedure|ermittelt|gemessen"
                            r"|Messverfahren|Prüfverfahren)\b", re.IGNORECASE)

BLOCK_RULES: tuple[BlockRule, ...] = (
    BlockRule("contact", _any(
        r"For (?:further|more) information,? please contact",
        r"(?:Media|Press) contacts?", r"Contacts?", r"Your contacts?(?: for the media)?",
        r"Bitte wenden Sie sich bei Rückfragen an", r"Bei Rückfragen wenden Sie sich bitte an",
        r"Rückfragen bitte an", r"Ansprechpartner(?:in|innen)?", r"Pressekontakt", r"Kontakt",
        tail=r"\s*:?", flags=NOCASE), heading=True),
    BlockRule("company-boilerplate", _any(
        r"(?:The|About the|About) BMW Group(?: in brief| profile)?", r"(?:Die|Über die) BMW Group", r"Company profile",
    ), heading=True),
    BlockRule("company-boilerplate", _any(
        r"With its (?:four |five )?brands BMW, MINI\b.*", r"Mit ihren (?:vier |fünf )?Marken BMW, MINI\b.*",
        r"The (?:economic )?success of the BMW Group has (?:always )?been\b.*",
        r"Der (?:wirtschaftliche )?Erfolg der BMW Group (?:beruht|basiert)\b.*",
    )),
    BlockRule("disclaimer", _any(
        rf"(?:The|These|All) (?:figures|values|data) (?:for|on|of|relating to|regarding)\b.*"
        rf"\b(?:consumption|emissions?|{CO2}|WLTP|NEDC)\b.*",
        rf"Die (?:Angaben|Werte) (?:zu|zum|zur|für)\b.*\b(?:\w*verbrauch\w*|\w*[Ee]missionen|{CO2}|WLTP|NEFZ)\b.*",
        flags=NOCASE), requires=TEST_PROCEDURE),
    BlockRule("disclaimer", _any(
        r"Further information on (?:the )?official fuel consumption\b.*",
        r"Weitere Informationen zum offiziellen Kraftstoffverbrauch\b.*",
        flags=NOCASE)),
)

CARD_RULES: tuple[CardRule, ...] = (
    CardRule("contact", _any(PHONE.pattern, EMAIL.pattern, flags=NOCASE), SHORT_NON_SENTENCE),
)

STRONG_HEADER = LineRule("header", _any(  # no body line is one of these alone (a column is wider)
    r"BMW Group", r"BMW AG", r"(?:BMW Group )?Corporate Communications", r"Konzernkommunikation",
    r"(?:Media|Press) (?:Information|Release)", r"Presse-?(?:information|mitteilung)", r"Medieninformation",
    r"(?:Date|Datum):?\s+\d{1,2}\.?\s+[^\W\d_]+\.?\s+\d{4}", r"(?:Date|Datum):?\s+\d{1,2}[./]\d{1,2}[./]\d{2,4}",
    r"Date:?\s+[^\W\d_]+\s+\d{1,2},\s+\d{4}",
    flags=NOCASE))

PAGE_RULES: tuple[LineRule, ...] = (
    STRONG_HEADER,
    LineRule("header", _any(
        r"(?:Subject|Thema|Betreff):?\s+(?!to\b)\S.*", rf"\d{{1,2}}\.?\s+{MONTH}\s+\d{{4}}",
        r"Company", r"Postal address", r"Firma", r"Postanschrift",
        r"Bayerische Motoren Werke(?: Aktiengesellschaft)?", r"Aktiengesellschaft", r"\d{5} (?:München|Munich)",
        r"Telephone", r"Telefon", r"Internet",
    ), edge=EDGE_LINES, in_block=True),
    LineRule("page-number", _any(
        r"(?:Page|Seite|p\.)\s*\d{1,3}(?:\s*(?:/|of|von)\s*\d{1,3})?", r"\d{1,3}\s*(?:/|of|von)\s*\d{1,3}",
        r"[-–—]\s*\d{1,3}\s*[-–—]",
        flags=NOCASE), edge=EDGE_LINES),
    LineRule("page-number", re.compile(r"\d{1,3}"), edge=1),  # a bare number: only the first or last line
)

LINE_RULES: tuple[LineRule, ...] = (
    LineRule("phone", PHONE),
    LineRule("email", EMAIL, ends_prose=True),
    LineRule("url", _any(
        r"(?:(?:Internet|Web(?:site)?|Media website|Homepage|Facebook|Twitter|X|YouTube|Instagram|LinkedIn|TikTok"
        r"|Xing|Threads)\s*:\s*)?(?:https?://|www\.)\S+",
        flags=NOCASE), ends_prose=True),
    LineRule("disclaimer", _any(
        rf"{CONSUMPTION_FIGURE}(?:[^:]{{1,60}}:\s*)?(?:(?:Fuel|Power|Energy|Electric(?:al)?(?: energy| power)?"
        rf"|Electricity)\s+consumption"
        rf"|{CO2}\s+emissions?|{CO2}\s+class|Electric range|(?:Kraftstoff|Strom|Energie)verbrauch"
        rf"|{CO2}-(?:Emissionen|Klasse)|Elektrische Reichweite)"
        rf"\s*(?:\([^)]*\)\s*)?(?:combined|weighted|kombiniert|gewichtet|WLTP|NEDC|NEFZ)\b.*",
        flags=NOCASE)),
)
# what a header or footer block is made of
FURNITURE = (*PAGE_RULES, *(r for r in LINE_RULES if r.name in ("phone", "email", "url")))

RULE_NAMES: tuple[str, ...] = tuple(sorted({r.name for r in (*PAGE_RULES, *BLOCK_RULES, *CARD_RULES, *LINE_RULES)}))


def paragraphs(lines: list[str]) -> list[range]:
    """Index ranges of the runs of non-empty lines."""
    spans, start = [], None
    for i, line in enumerate([*lines, ""]):
        if line and start is None:
            start = i
        elif not line and start is not None:
            spans.append(range(start, i))
            start = None
    return spans


def _block_at(lines: list[str], spans: list[range], n: int, i: int) -> tuple[BlockRule, list[int]] | None:
    """The rule whose block starts at line `i` of paragraph `n`, with the block's line indices."""
    span = spans[n]
    for rule in BLOCK_RULES:
        if not rule.start.fullmatch(lines[i]):
            continue
        block = list(range(i, span.stop))
        if rule.heading and len(span) == 1 and n + 1 < len(spans):
            block += spans[n + 1]
        if rule.requires is None or rule.requires.search(" ".join(lines[j] for j in block)):
            return rule, block
    return None


def _mark_blocks(lines: list[str], page_starts: set[int], removed: list[str | None]) -> None:
    """A block starts a paragraph, or a page: a paragraph that did not end in a sentence runs on across the
    page break, and the block on the next page starts within it."""
    spans = paragraphs(lines)
    for n, span in enumerate(spans):
        for i in [span.start, *sorted(page_starts & set(span[1:]))]:
            found = _block_at(lines, spans, n, i)
            if found is not None and not removed[i]:
                rule, block = found
                for j in block:
                    removed[j] = removed[j] or rule.name
                break


def _mark_cards(lines: list[str], removed: list[str | None]) -> None:
    for span in paragraphs(lines):
        left = [i for i in span if not removed[i]]
        for rule in CARD_RULES:
            if left and any(rule.key.fullmatch(lines[i]) for i in left) and all(
                    rule.line.fullmatch(lines[i]) for i in left):
                for i in left:
                    removed[i] = rule.name
                break


def _ends_sentence_begun_before(lines: list[str], i: int) -> bool:
    return bool(SENTENCE_END.fullmatch(lines[i])) and i > 0 and bool(lines[i - 1]) and not SENTENCE_END.fullmatch(
        lines[i - 1])


def _mark_lines(rules: tuple[LineRule, ...], lines: list[str], removed: list[str | None]) -> None:
    filled = [i for i, line in enumerate(lines) if line]
    for k, i in enumerate(filled):
        if removed[i]:
            continue
        from_edge = min(k, len(filled) - 1 - k)
        rule = next((r for r in rules if (r.edge is None or from_edge < r.edge) and r.pattern.fullmatch(lines[i])),
                    None)
        if rule is not None and not (rule.ends_prose and _ends_sentence_begun_before(lines, i)):
            removed[i] = rule.name


def _running_header(line: str, page: int) -> bool:
    """"<n> <section>" or "<section> <n>" on page n (the page number beside the section's name), short and not
    a sentence."""
    m = RUNNING_HEADER.fullmatch(line)
    return m is not None and int(m["n"] or m["m"]) == page and not SENTENCE_END.fullmatch(line)


def _furniture(line: str, page: int) -> bool:
    return any(r.pattern.fullmatch(line) for r in FURNITURE) or _running_header(line, page)


def _in_header_block(lines: list[str], span: range, i: int, page: int) -> bool:
    """Line i is part of a header or footer block: not a sentence, in a paragraph that holds a strong header
    line or is made of nothing but furniture."""
    return not SENTENCE_END.fullmatch(lines[i]) and (
        any(STRONG_HEADER.pattern.fullmatch(lines[j]) for j in span) or all(_furniture(lines[j], page) for j in span))


def _page_rule(lines: list[str], i: int, from_edge: int, span: range, page: int) -> str | None:
    for rule in PAGE_RULES:
        if (rule.edge is None or from_edge < rule.edge) and rule.pattern.fullmatch(lines[i]) and (
                not rule.in_block or _in_header_block(lines, span, i, page)):
            return rule.name
    if from_edge < EDGE_LINES and _running_header(lines[i], page) and (
            from_edge == 0 or _in_header_block(lines, span, i, page)):
        return "header"
    return None


def _kept(lines: list[str], removed: list[str | None]) -> tuple[list[str], Counter[str]]:
    counts = Counter(name for line, name in zip(lines, removed, strict=True) if line and name)
    return [line for line, name in zip(lines, removed, strict=True) if not name], counts


def strip_page_furniture(lines: list[str], page: int) -> tuple[list[str], Counter[str]]:
    """Page number `page` (from 1) without its running header, footer and page number (the gaps stay), and the
    lines removed per rule."""
    removed: list[str | None] = [None] * len(lines)
    filled = [i for i, line in enumerate(lines) if line]
    span_of = {i: span for span in paragraphs(lines) for i in span}
    for k, i in enumerate(filled):
        removed[i] = _page_rule(lines, i, min(k, len(filled) - 1 - k), span_of[i], page)
    return _kept(lines, removed)


def strip_boilerplate(lines: list[str], page_starts: list[int]) -> tuple[list[str], Counter[str]]:
    """The document's lines (and the index of each page's first line) without contact blocks, company
    boilerplate and disclaimers, and the lines removed per rule."""
    removed: list[str | None] = [None] * len(lines)
    _mark_blocks(lines, set(page_starts), removed)
    _mark_cards(lines, removed)
    _mark_lines(LINE_RULES, lines, removed)
    return _kept(lines, removed)
