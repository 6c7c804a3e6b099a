"""Typed facts found by regex in press-release text: dates, figures, model names and places, each with its sentence.

Pure functions. A fact keeps its exact span in the sentence, and a sentence is an exact slice of the document
text, so answers and masked questions built from facts quote the article verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

FACT_TYPES = ("date", "figure", "model", "place")

# Words ending in "." that do not end a sentence.
_ABBREVIATIONS = frozenset(
    "approx ca cf co corp dr e.g i.e inc jr ltd mr mrs ms no nos nr prof sr st vs".split()
)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”’)]))\s+(?=[\"“‘(]?[A-Z0-9])")

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_DATE = re.compile(
    rf"\b(?:(?P<day>{_DAY})\s+)?(?:{_MONTHS})(?:\s+(?P<day2>{_DAY}),?)?\s+(?:19|20)\d{{2}}\b"
    # a bare year only after a preposition of time; the fact is the year alone
    rf"|\b(?i:in|by|since|until|from|before|after|of)\s+(?P<year>(?:19|20)\d{{2}})\b(?![.,]\d|\s?(?:%|per\s?cent))"
)

_NUMBER = r"(?<![\w.,/-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_SCALES = ("thousand", "million", "billion", "trillion")
_SCALE = rf"(?:\s(?:{'|'.join(_SCALES)}))?"
_CURRENCY = r"(?:EUR|€|US\$|USD|\$|GBP|£|RMB|CNY)"
# Unit spellings -> unit group, tried in order: "kWh" before "kW", "km/h" before "km".
_UNITS: dict[str, str] = {
    r"%": "percent",
    r"per\s?cent\b": "percent",
    r"percentage points\b": "percentage points",
    r"kWh\b": "kWh",
    r"kW\b": "kW",
    r"(?:km/h|mph)\b": "speed",
    r"(?:km|kilometres|kilometers|miles)\b": "distance",
    r"g/km\b": "g/km",
    r"(?:hp|PS|bhp)\b": "hp",
    r"Nm\b": "Nm",
    r"(?:seconds|minutes|hours|days|weeks|months|years)\b": "time",
    r"(?:euros?|EUR)\b": "money",
    r"(?:units|vehicles|cars|motorcycles|automobiles|deliveries)\b": "units",
    r"(?:employees|people|associates|apprentices|specialists|jobs|visitors|guests|spectators|participants)\b": "people",
    r"(?:tonnes|tons)\b": "mass",
    r"(?:kilograms|kg)\b": "mass",
    r"(?:square metres|square meters|m²)": "area",
    r"(?:cubic metres|cubic meters|m³|litres|liters)\b": "volume",
    r"(?:millimetres|millimeters|metres|meters|mm|cm)\b": "length",
    r"(?:volts|V)\b": "volts",
    r"(?:plants|sites|locations|countries|markets|dealers|models|robots|laps|patents|contracts)\b": "count",
}
_UNIT_GROUPS = list(_UNITS.values())
_FIGURE = re.compile(
    rf"(?P<money>{_CURRENCY}\s?{_NUMBER}{_SCALE}\b)"
    rf"|{_NUMBER}{_SCALE}(?:\s?(?:{'|'.join(f'(?P<u{i}>{u})' for i, u in enumerate(_UNITS))}))"
)

_BMW_SUFFIX = (
    r"(?:\s+(?:M\d{2,3}[id]?|[xse]Drive\d{2}[a-z]*|Competition|CS|CSL|GT3|GT4|Touring|Gran\s+Coup[ée]|Coup[ée]"
    r"|EVO|Convertible|Sedan|Roadster|Active\s+Tourer|Gran\s+Tourer|Gran\s+Turismo|Long\s+Wheelbase|Hybrid\s+V8))*"
)
_MODEL = re.compile(
    r"\b(?P<bmw>BMW\s+(?:[1-8]\s+Series|iX[1-7]?|i[3-8]|X[1-7]|XM|Z[1-8]|M[1-8]|M\s+Hybrid\s+V8"
    r"|Vision\s+(?:Neue\s+Klasse(?:\s+X)?|[A-Z][\w-]+(?:\s+[A-Z][\w-]+)?)|Concept\s+[A-Z][\w-]+"
    r"|[RSFGKM]\s?\d{2,4}(?:\s?[A-Z]{1,3}|\s+[A-Z][a-z]+)?|CE\s?0\d)"
    + _BMW_SUFFIX
    + r")(?![\w-])"
    r"|(?P<mini>MINI\s+(?:John\s+Cooper\s+Works(?:\s+(?:Countryman|Aceman|Convertible|Electric|E))?"
    r"|Cooper(?:\s+(?:SE|S|C|E))?|Countryman(?:\s+(?:SE|S|C|E|D|ALL4))*|Aceman(?:\s+(?:SE|E))?"
    r"|Convertible|Clubman|Electric|Paceman))(?![\w-])"
    r"|(?P<rolls>Rolls-Royce\s+(?:Black\s+Badge\s+)?(?:Spectre|Cullinan(?:\s+Series\s+II)?|Ghost(?:\s+Series\s+II)?"
    r"|Phantom(?:\s+Extended)?(?:\s+Series\s+II)?|Wraith|Dawn|(?:La\s+Rose\s+Noire\s+|Arcadia\s+|Amethyst\s+)?Droptail"
    r"|Boat\s+Tail|Sweptail))(?![\w-])"
)

# Plant, office and event locations that BMW Group releases name; countries and regions.
_CITIES = (
    "Munich Dingolfing Regensburg Leipzig Landshut Wackersdorf Berlin Eisenach Garching Unterschleißheim Steyr Graz"
    " Oxford Swindon Goodwood Spartanburg Woodruff Rosslyn Pretoria Shenyang Chennai Rayong Araquari Debrecen Kulim"
    " Jakarta Manaus Cairo Beijing Shanghai Tokyo Seoul Singapore Dubai Detroit Frankfurt Geneva Paris London Milan"
    " Cernobbio Amsterdam Brussels Vienna Zurich Madrid Barcelona Rome Stockholm Oslo Copenhagen Sydney Melbourne"
    " Mumbai Johannesburg Toronto Miami Monterey Salzburg Hamburg Stuttgart Cologne Düsseldorf Nuremberg Macau"
).split() + [
    "Hams Hall", "San Luis Potosí", "San Luis Potosi", "Berlin-Spandau", "Irlbach-Straßkirchen", "Los Angeles",
    "New York", "Las Vegas", "Pebble Beach", "Lake Como", "Villa d'Este", "Abu Dhabi", "Mexico City", "São Paulo",
    "Cape Town", "Hong Kong",
]
_COUNTRIES = (
    "Germany China Mexico Hungary Austria Brazil India Thailand Japan Korea France Italy Spain Netherlands"
    " Switzerland Belgium Sweden Norway Denmark Poland Canada Australia Malaysia Indonesia Egypt Portugal"
    " Monaco Singapore Philippines Vietnam Turkey Qatar Bahrain"
).split() + [
    "United States", "USA", "United Kingdom", "UK", "Great Britain", "South Africa", "South Korea", "Czech Republic",
    "United Arab Emirates",
]
_REGIONS = ["Europe", "Asia", "Africa", "North America", "South America", "Middle East"]
_CIRCUITS = (
    "Daytona Sebring Monza Imola Fuji Norisring Nürburgring Nuerburgring Hockenheim Zandvoort Suzuka Interlagos"
).split() + ["Le Mans", "Spa-Francorchamps", "Road Atlanta", "Watkins Glen", "Laguna Seca"]
_PLACES: dict[str, str] = {
    **{c: "country" for c in _COUNTRIES},
    **{c: "region" for c in _REGIONS},
    **{c: "city" for c in _CITIES},  # a city-state (Singapore) counts as a city
    **{c: "circuit" for c in _CIRCUITS},
}
_PLACE = re.compile(
    r"(?<![\w-])(?:" + "|".join(re.escape(p) for p in sorted(_PLACES, key=len, reverse=True)) + r")(?![\w-])"
)


@dataclass(frozen=True)
class Sentence:
    text: str
    paragraph: int  # index of the paragraph in the document
    index: int  # index of the sentence in the document


@dataclass(frozen=True)
class Fact:
    type: str  # one of FACT_TYPES
    value: str  # exactly as written in the sentence
    group: str  # a finer class for like-for-like distractors: unit, brand, city/country, day/month/year
    sentence: Sentence
    start: int  # span of value in sentence.text
    end: int

    @property
    def key(self) -> str:
        return normalise(self.value)

    def masked(self, blank: str = "____") -> str:
        return self.sentence.text[: self.start] + blank + self.sentence.text[self.end :]


def normalise(value: str) -> str:
    """A comparison key: two spellings of one value ("45 per cent", "45%") compare equal."""
    v = value.casefold().replace("per cent", "%").replace("percent", "%").replace("€", "eur")
    return re.sub(r"[\s,]+", "", v)


def sentences(text: str) -> list[Sentence]:
    """Sentences of a text whose paragraphs are separated by blank lines; each an exact slice of the text."""
    out: list[Sentence] = []
    for p, paragraph in enumerate(re.split(r"\n\s*\n", text)):
        spans: list[list[int]] = []
        start = 0
        for m in [*_SENTENCE_END.finditer(paragraph), None]:
            end = len(paragraph) if m is None else m.start()
            if spans and _continues(paragraph[spans[-1][0] : spans[-1][1]]):
                spans[-1][1] = end
            else:
                spans.append([start, end])
            start = 0 if m is None else m.end()
        for b, e in spans:
            if paragraph[b:e].strip():
                out.append(Sentence(paragraph[b:e].strip(), p, len(out)))
    return out


def _continues(piece: str) -> bool:
    """True when a piece ends in an abbreviation or an initial, so the next piece belongs to its sentence."""
    words = piece.split()
    if not words or not words[-1].endswith("."):
        return False
    word = words[-1].rstrip(".").lstrip("(\"“").casefold()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _matches(sentence: str) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, type, group) of every candidate match; overlaps are resolved by the caller."""
    for m in _MODEL.finditer(sentence):
        brand = "BMW" if m.group("bmw") else "MINI" if m.group("mini") else "Rolls-Royce"
        yield m.start(), m.end(), "model", brand
    dates = list(_DATE.finditer(sentence))
    for m in dates:
        if not m.group("year"):
            yield m.start(), m.end(), "date", "day" if (m.group("day") or m.group("day2")) else "month"
    for m in _FIGURE.finditer(sentence):
        if m.group("money"):
            group = "money"
        else:
            group = next(_UNIT_GROUPS[i] for i in range(len(_UNITS)) if m.group(f"u{i}") is not None)
        scale = next((w for w in _SCALES if w in m.group(0)), None)  # "EUR 2 billion" is not like "EUR 52,900"
        yield m.start(), m.end(), "figure", f"{group} {scale}" if scale else group
    for m in dates:  # after figures: "of 2025 vehicles" is a figure
        if m.group("year"):
            yield m.start("year"), m.end("year"), "date", "year"
    for m in _PLACE.finditer(sentence):
        yield m.start(), m.end(), "place", _PLACES[m.group(0)]


def extract_facts(text: str) -> list[Fact]:
    """Every fact of a document in reading order; where matches overlap, the match found first wins."""
    facts: list[Fact] = []
    for s in sentences(text):
        taken: list[tuple[int, int]] = []
        found = []
        for start, end, kind, group in _matches(s.text):
            if any(start < e and b < end for b, e in taken):
                continue
            taken.append((start, end))
            found.append(Fact(kind, s.text[start:end], group, s, start, end))
        facts.extend(sorted(found, key=lambda f: f.start))
    return facts
