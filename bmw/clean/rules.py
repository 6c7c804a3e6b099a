"""Named boilerplate rules of press-release PDFs, and the engine that applies them.

Lines are whitespace-normalised; an empty line is a paragraph gap. Every rule matches one whole line
(`fullmatch`; no DOTALL, no MULTILINE). Page rules remove running headers and footers page by page; the
other rules run over the pages stitched into one document. A block rule removes from its start line to the
end of that paragraph, or - for a heading standing alone - the one paragraph after it: never more, so no
rule can run on to the end of a page. A card rule removes one paragraph whose lines all look like a contact
card. Each removed line is counted once, for the first rule that removes it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

EDGE_LINES = 8  # running headers and footers sit within this many lines of a page's top or bottom


def _any(*alternatives: str, tail: str = "", flags: int = 0) -> re.Pattern[str]:
    return re.compile("(?:" + "|".join(alternatives) + ")" + tail, flags)


@dataclass(frozen=True)
class LineRule:
    name: str
    pattern: re.Pattern[str]  # must match the whole line
    edge: int | None = None  # only within this many lines of the top or bottom of a page


@dataclass(frozen=True)
class BlockRule:
    name: str
    start: re.Pattern[str]  # a whole line that opens the block; the block ends with its paragraph
    heading: bool = False  # a start line that is a paragraph of its own heads the next paragraph: remove both


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
        r"Further information on (?:the )?official fuel consumption\b.*",
        rf"Die (?:Angaben|Werte) (?:zu|zum|zur|für)\b.*\b(?:\w*verbrauch\w*|\w*[Ee]missionen|{CO2}|WLTP|NEFZ)\b.*",
        r"Weitere Informationen zum offiziellen Kraftstoffverbrauch\b.*",
        flags=NOCASE)),
)

CARD_RULES: tuple[CardRule, ...] = (
    CardRule("contact", _any(PHONE.pattern, EMAIL.pattern, flags=NOCASE), SHORT_NON_SENTENCE),
)

PAGE_RULES: tuple[LineRule, ...] = (
    LineRule("header", _any(
        r"BMW Group", r"BMW AG", r"(?:BMW Group )?Corporate Communications", r"Konzernkommunikation",
        r"(?:Media|Press) (?:Information|Release)", r"Presse-?(?:information|mitteilung)", r"Medieninformation",
        r"(?:Date|Datum):?\s+\d{1,2}\.?\s+[^\W\d_]+\.?\s+\d{4}", r"(?:Date|Datum):?\s+\d{1,2}[./]\d{1,2}[./]\d{2,4}",
        r"Date:?\s+[^\W\d_]+\s+\d{1,2},\s+\d{4}",
        flags=NOCASE)),
    LineRule("header", _any(
        r"(?:Subject|Thema|Betreff):?\s+(?!to\b)\S.*", rf"\d{{1,2}}\.?\s+{MONTH}\s+\d{{4}}",
        r"Company", r"Postal address", r"Firma", r"Postanschrift",
        r"Bayerische Motoren Werke(?: Aktiengesellschaft)?", r"Aktiengesellschaft", r"\d{5} (?:München|Munich)",
        r"Telephone", r"Telefon", r"Internet",
    ), edge=EDGE_LINES),
    LineRule("page-number", _any(
        r"(?:Page|Seite|p\.)\s*\d{1,3}(?:\s*(?:/|of|von)\s*\d{1,3})?", r"\d{1,3}\s*(?:/|of|von)\s*\d{1,3}",
        r"[-–—]\s*\d{1,3}\s*[-–—]",
        flags=NOCASE), edge=EDGE_LINES),
    LineRule("page-number", re.compile(r"\d{1,3}"), edge=1),  # a bare number: only the first or last line
)

LINE_RULES: tuple[LineRule, ...] = (
    LineRule("phone", PHONE),
    LineRule("email", EMAIL),
    LineRule("url", _any(
        r"(?:(?:Internet|Web(?:site)?|Media website|Homepage|Facebook|Twitter|X|YouTube|Instagram|LinkedIn|TikTok"
        r"|Xing|Threads)\s*:\s*)?(?:https?://|www\.)\S+",
        flags=NOCASE)),
    LineRule("disclaimer", _any(
        rf"(?:[^:]{{1,60}}:\s*)?(?:(?:Fuel|Power|Energy|Electric(?:al)?(?: energy| power)?|Electricity)\s+consumption"
        rf"|{CO2}\s+emissions?|{CO2}\s+class|Electric range|(?:Kraftstoff|Strom|Energie)verbrauch"
        rf"|{CO2}-(?:Emissionen|Klasse)|Elektrische Reichweite)"
        rf"\s*(?:\([^)]*\)\s*)?(?:combined|weighted|kombiniert|gewichtet|WLTP|NEDC|NEFZ)\b.*",
        flags=NOCASE)),
)

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


def _mark_blocks(lines: list[str], removed: list[str | None]) -> None:
    spans = paragraphs(lines)
    for n, span in enumerate(spans):
        for i in span:
            rule = next((r for r in BLOCK_RULES if r.start.fullmatch(lines[i])), None)
            if rule is None or removed[i]:
                continue
            block = list(range(i, span.stop))
            if rule.heading and len(span) == 1 and n + 1 < len(spans):
                block += spans[n + 1]
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


def _mark_lines(rules: tuple[LineRule, ...], lines: list[str], removed: list[str | None]) -> None:
    filled = [i for i, line in enumerate(lines) if line]
    for k, i in enumerate(filled):
        if removed[i]:
            continue
        from_edge = min(k, len(filled) - 1 - k)
        rule = next((r for r in rules if (r.edge is None or from_edge < r.edge) and r.pattern.fullmatch(lines[i])),
                    None)
        if rule is not None:
            removed[i] = rule.name


def _kept(lines: list[str], removed: list[str | None]) -> tuple[list[str], Counter[str]]:
    counts = Counter(name for line, name in zip(lines, removed, strict=True) if line and name)
    return [line for line, name in zip(lines, removed, strict=True) if not name], counts


def strip_page_furniture(lines: list[str]) -> tuple[list[str], Counter[str]]:
    """One page without its running header, footer and page number (the gaps stay), and the lines removed
    per rule."""
    removed: list[str | None] = [None] * len(lines)
    _mark_lines(PAGE_RULES, lines, removed)
    return _kept(lines, removed)


def strip_boilerplate(lines: list[str]) -> tuple[list[str], Counter[str]]:
    """The document's lines without contact blocks, company boilerplate and disclaimers, and the lines
    removed per rule."""
    removed: list[str | None] = [None] * len(lines)
    _mark_blocks(lines, removed)
    _mark_cards(lines, removed)
    _mark_lines(LINE_RULES, lines, removed)
    return _kept(lines, removed)
