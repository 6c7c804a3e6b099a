"""The press releases of the bundled mirror: pure and deterministic from a seed.

`mirror_articles()` is the ground truth the crawler and cleaner tests compare against; `mirror_releases()`
adds what only the rendered site needs (the PDF's blocks with their boilerplate, a second URL, extra links).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, replace
from functools import lru_cache

from mirror import corpus as C
from mirror.layout import Block, paginate

ARTICLE_COUNT = 116  # 109 good English PDFs, 1 German, 4 bad attachments, 2 HTML-only: 6 listing pages
# A scaled site (`bmw mirror build --releases N`) keeps the bad cases among its newest 40 entries; release numbers
# rise by 140 on average from 400,000, so 3,500 releases keep the live site's six digits (T0######EN: checked).
MIN_RELEASES, MAX_RELEASES = 40, 3500
PER_PAGE = 20
FIRST_DAY, LAST_DAY = dt.date(2024, 1, 8), dt.date(2026, 10, 30)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
ALTERNATIVES = re.compile(r"\[([^\[\]]+)\]")
OFFSITE_URL = "https://www.bmwgroup.com/en/company.html"
# Bad cases sit at fixed newest-first positions among the 40 newest entries, so a crawl with a small target
# already meets all of them (the crawler's tests rely on it).
POSITIONS = {"corrupt_pdf": 3, "image_only_pdf": 8, "german_release": 11, "html_only": 14, "duplicate_url": 19,
             "missing_attachment": 22, "offsite_link": 25, "not_pdf_attachment": 28, "robots_disallowed_link": 33,
             "html_only_2": 37}
ATTACHMENT_KIND = {"corrupt_pdf": "corrupt", "image_only_pdf": "image_only", "missing_attachment": "missing",
                   "not_pdf_attachment": "not_pdf", "html_only": "none", "html_only_2": "none"}
CATEGORIES = ("model", "model", "model", "plant", "motorsport", "sales", "finance", "sustainability",
              "neue_klasse", "people", "innovation", "motorcycle")
CONSUMPTION_CATEGORIES = {"model", "motorcycle", "neue_klasse"}


@dataclass(frozen=True)
class MirrorArticle:
    id: str  # "T0400123EN"
    slug: str
    title: str
    date: dt.date
    language: str  # "en" | "de"
    paragraphs: tuple[str, ...]  # the body, ground truth: every sentence here must survive cleaning
    attachment: str  # "pdf" | "corrupt" | "image_only" | "missing" (404) | "not_pdf" | "none"
    pdf_pages: int  # pages of the served PDF with a text or image layer; 0 when none readable is served

    @property
    def path(self) -> str:
        return f"/global/article/detail/{self.id}/{self.slug}"

    @property
    def attachment_path(self) -> str | None:
        return None if self.attachment == "none" else f"/global/article/attachment/{self.id}/1"


@dataclass(frozen=True)
class Release:
    article: MirrorArticle
    pdf_blocks: tuple[Block, ...]  # the attachment's text, boilerplate included, in reading order
    alias_path: str | None = None  # a second URL of the same article, listed once more on the next page
    links: tuple[tuple[str, str], ...] = ()  # (href, text) related links on the article page


def format_date(d: dt.date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def slugify(title: str, limit: int = 80) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug if len(slug) <= limit else slug[: limit + 1].rsplit("-", 1)[0]


def _num(n: int) -> str:
    return f"{n:,}"


def _context(rng: random.Random, day: dt.date) -> dict[str, str]:
    """Slot values for one article: concrete, plausible figures, dates, names and places."""
    model, powertrain, _ = rng.choice(C.MODELS)
    plant, country, plant_models = rng.choice(C.PLANTS)
    person, person2 = (f"{f} {l}" for f, l in zip(rng.sample(C.FIRST_NAMES, 2), rng.sample(C.LAST_NAMES, 2)))
    driver, driver2 = rng.sample(C.DRIVER_NAMES, 2)
    position, position2 = rng.sample(C.POSITIONS, 2)
    series = rng.choice(C.SERIES)
    margin_low = rng.randint(5, 8)
    return {
        "model": model, "powertrain": powertrain, "plant": plant, "country": country,
        "plant_models": plant_models, "market": rng.choice(C.MARKETS), "city": "Munich",
        "bike": rng.choice(C.MOTORCYCLES)[0], "person": person, "person2": person2,
        "role": rng.choice(C.BOARD_ROLES), "manager_role": rng.choice(C.MANAGER_ROLES),
        "driver": driver, "driver2": driver2, "position": position, "position2": position2,
        "race": rng.choice(C.RACES), "race_car": rng.choice(C.RACE_CARS), "team": rng.choice(C.TEAMS),
        "series": series, "series_short": series.split(" (")[0],
        "quote": rng.choice(C.QUOTES), "quarter": C.QUARTERS[(day.month - 1) // 3 - 1] if day.month > 3
        else C.QUARTERS[3], "year": str(day.year if day.month > 3 else day.year - 1),
        "prev_year": str(day.year - 1), "year_next": str(day.year + 1), "join_year": str(rng.randint(1996, 2012)),
        "date": format_date(day + dt.timedelta(days=rng.randint(5, 60))),
        "date_past": format_date(day - dt.timedelta(days=rng.randint(20, 400))),
        "units": _num(rng.randint(40_000, 620_000)), "units2": _num(rng.randint(150_000, 450_000)),
        "units3": _num(rng.randint(40_000, 90_000)), "units4": _num(rng.randint(8_000, 190_000)),
        "units_small": str(rng.randint(40, 260)), "rr_units": _num(rng.randint(1_100, 1_700)),
        "m_units": _num(rng.randint(40_000, 60_000)), "pct": str(rng.randint(8, 45)),
        "pct2": str(rng.randint(20, 50)), "pct3": str(rng.randint(3, 30)), "eur_m": _num(rng.randint(8, 150) * 10),
        "eur_bn": f"{rng.randint(330, 420) / 10:.1f}", "rnd_bn": f"{rng.randint(17, 24) / 10:.1f}",
        "pbt_bn": f"{rng.randint(20, 45) / 10:.1f}", "capex_bn": f"{rng.randint(12, 22) / 10:.1f}",
        "margin": f"{rng.randint(50, 95) / 10:.1f}", "margin_low": str(margin_low),
        "margin_high": str(margin_low + 2), "contracts": _num(rng.randint(350_000, 480_000)),
        "term": str(rng.choice((3, 5, 7, 10))), "coupon": f"{rng.randint(250, 400) / 100:.2f}",
        "price": _num(C.MODEL_PRICES[model] * 1000 + rng.choice((0, 200, 500, 700, 900))),
        "recovery": str(rng.randint(90, 96)),
        "litres": str(rng.randint(380, 620)), "mm": str(rng.randint(20, 85)), "range_km": str(rng.randint(45, 80) * 10),
        "range_km_phev": str(rng.randint(70, 110)), "charge_min": str(rng.randint(18, 32)),
        "power_kw": str(rng.randint(15, 45) * 10), "kwh": f"{rng.randint(600, 1100) / 10:.1f}",
        "charge_kw": str(rng.choice((300, 350, 400))), "bike_kw": str(rng.randint(70, 155)),
        "torque": str(rng.randint(100, 160)), "kg": str(rng.randint(5, 14)),
        "jobs": _num(rng.randint(12, 190) * 100), "robots": _num(rng.randint(400, 1400)),
        "hours": _num(rng.randint(20_000, 160_000)), "countries": str(rng.randint(40, 120)),
        "trucks": str(rng.randint(300, 1200)), "apprentices": str(rng.randint(60, 320)),
        "laps": str(rng.randint(180, 390)), "laptime": f"1:{rng.randint(30, 59)}.{rng.randint(100, 999)} minutes",
        "km": _num(rng.randint(8, 90) * 1000), "hours_small": str(rng.randint(6, 14)),
        "stops": str(rng.randint(4, 14)), "spectators": _num(rng.randint(20, 250) * 1000),
        "cars": str(rng.randint(2, 6)), "tonnes": _num(rng.randint(50, 600) * 1000),
        "tonnes_co2": _num(rng.randint(100, 900) * 1000), "water": f"{rng.randint(15, 24) / 10:.1f}",
        "speed": str(rng.choice((60, 80, 110, 130))), "months": str(rng.randint(3, 18)),
        "patents": _num(rng.randint(2, 9) * 1000), "models_count": str(rng.randint(20, 40)),
        "guests": str(rng.randint(150, 800)), "seats": str(rng.choice((4, 5, 5, 7))),
        "litres_max": _num(rng.randint(1300, 1900)), "colour": rng.choice(C.COLOURS),
        "colours": str(rng.randint(9, 24)), "wheel": str(rng.choice((19, 20, 21, 22))),
        "assist_count": str(rng.randint(12, 40)), "pct_small": str(rng.randint(2, 9)),
        "date2": format_date(day + dt.timedelta(days=rng.randint(61, 200))),
        "sprint": f"{rng.randint(35, 85) / 10:.1f}", "charge_hours": f"{rng.randint(25, 60) / 10:.1f}",
        "spandau_jobs": _num(rng.randint(20, 24) * 100), "moto_units": _num(rng.randint(42_000, 68_000)),
        "trades": str(rng.randint(6, 18)), "seconds": str(rng.randint(3, 20)),
        "group_units_q": _num(rng.randint(540_000, 640_000)), "brand_units": _num(rng.randint(470_000, 560_000)),
        "ev_units": _num(rng.randint(90_000, 150_000)), "green_year": str(rng.randint(2018, 2021)),
        "fleet": _num(rng.randint(2, 40) * 100), "charge_add": str(rng.randint(25, 40) * 10),
        "years": str(rng.randint(3, 9)), "honours": str(rng.randint(5, 30)),
        "jobs_small": str(rng.randint(30, 400)), "next_quarter": C.QUARTERS[(day.month - 1) // 3],
        "month_next": MONTHS[day.month % 12], "market2": rng.choice(C.MARKETS),
        "model_ev": rng.choice([m[0] for m in C.MODELS if m[1] == "ev"]),
    }


def fill(template: str, rng: random.Random, ctx: dict[str, str]) -> str:
    """A template with each `[a|b|c]` alternative chosen by `rng` and its slots filled from `ctx`."""
    return ALTERNATIVES.sub(lambda m: rng.choice(m.group(1).split("|")), template).format(**ctx)


def _category_context(rng: random.Random, category: str, day: dt.date) -> dict[str, str]:
    ctx = _context(rng, day)
    if category == "plant":
        ctx["city"] = ctx["plant"]
    elif category == "neue_klasse":
        ctx["plant"], ctx["model"] = rng.choice(C.NEUE_KLASSE_PLANTS), "BMW iX3"
    elif category in ("model", "sales"):
        ctx["plant"] = rng.choice(C.VEHICLE_PLANTS)
    return ctx


def _title_and_context(rng: random.Random, category: str, day: dt.date, taken: set[str]) -> tuple[str, dict]:
    """A title no other article has, and the slot values it shares with its body. A category's titles run out
    after a few dozen releases: past those (only in a scaled site) a title gets a subtitle, as live ones often do."""
    for _ in range(50):
        ctx = _category_context(rng, category, day)
        title = rng.choice(C.TITLES[category]).format(**ctx)
        if title not in taken:
            return title, ctx
    for _ in range(50):
        ctx = _category_context(rng, category, day)
        title = f"{rng.choice(C.TITLES[category])}: {rng.choice(C.SUBTITLES)}".format(**ctx)
        if title not in taken:
            return title, ctx
    raise RuntimeError(f"no unique title left for category {category!r}")


def _sentence_pools(category: str, powertrain: str) -> tuple[list[str], list[str]]:
    own = list(C.SENTENCES[category])
    if category == "model":
        own += C.SENTENCES[f"model_{powertrain}"]
    return own, list(C.SENTENCES["general"])


def _paragraphs(rng: random.Random, category: str, ctx: dict[str, str]) -> tuple[str, ...]:
    """3-7 paragraphs: the category's lead sentence first, then its other sentences in random order with a
    general one now and then; no sentence twice."""
    lead, *own = C.SENTENCES[category] + (C.SENTENCES[f"model_{ctx['powertrain']}"] if category == "model" else ())
    general = list(C.SENTENCES["general"])
    rng.shuffle(own)
    rng.shuffle(general)
    own.append(lead)  # taken first: picks pop from the end
    count = rng.randint(3, 7)
    low, high = (2, 3) if count <= 4 else (3, 5)  # short releases and long ones: PDFs of 1 to 3 pages
    paragraphs = []
    for i in range(count):
        n = min(rng.randint(low, high), len(own) + len(general))
        if n == 0:
            break
        picks = [(general if general and (not own or (i or k) and rng.random() < 0.2) else own).pop()
                 for k in range(n)]
        text = " ".join(fill(s, rng, ctx) for s in picks)
        paragraphs.append(f"{ctx['city']}. {text}" if i == 0 else text)
    return tuple(paragraphs)


def _contacts(rng: random.Random) -> list[Block]:
    blocks = [Block("For further information please contact:", "note", wrap=False, space_after=0),
              Block("Corporate Communications", "note", wrap=False, space_after=0.5)]
    for _ in range(rng.choice((1, 1, 2))):
        first, last = rng.choice(C.FIRST_NAMES), rng.choice(C.LAST_NAMES)
        blocks += [Block(f"{first} {last}", "note", wrap=False, space_after=0),
                   Block(rng.choice(C.CONTACT_ROLES), "note", wrap=False, space_after=0),
                   Block(f"Telephone: +49 89 382-{rng.randint(10000, 99999)}", "note", wrap=False, space_after=0),
                   Block(f"E-mail: {first.lower()}.{last.lower()}@bmwgroup.com", "note", wrap=False, space_after=0.5)]
    blocks.append(Block("Internet: www.press.bmwgroup.com", "note", wrap=False))
    return blocks


def _disclaimer_lines(category: str, ctx: dict[str, str]) -> tuple[str, list[str]]:
    """The product the release is about and its consumption/emission lines."""
    if category == "motorcycle":
        bike, fuel, co2 = next(m for m in C.MOTORCYCLES if m[0] == ctx["bike"])
        return bike, [fuel, co2]
    name = "BMW iX3" if category == "neue_klasse" else ctx["model"]
    model, powertrain, first = next(m for m in C.MODELS if m[0] == name)
    if powertrain == "ev":
        return model, [first, C.EV_CO2]
    if powertrain == "phev":
        return model, [first, C.PHEV_POWER, C.PHEV_CO2]
    return model, [first, C.ICE_CO2[model]]


def _pdf_blocks(rng: random.Random, article: MirrorArticle, category: str, ctx: dict[str, str]) -> tuple[Block, ...]:
    """The release as its PDF carries it: title, body, and the boilerplate a cleaner must remove."""
    body = [Block(p) for p in article.paragraphs]
    if category in CONSUMPTION_CATEGORIES:
        product, lines = _disclaimer_lines(category, ctx)
        first = next((i for i, p in enumerate(article.paragraphs) if product in p), 0)
        disclaimer = [Block(line, "note", wrap=False, space_after=0) for line in lines]
        disclaimer[-1] = replace(disclaimer[-1], space_after=1.0)
        body[first + 1 : first + 1] = disclaimer
        body.append(Block(C.FIGURES_NOTE.format(**ctx), "note"))
    contacts = _contacts(rng)
    year = article.date.year - 1
    boilerplate = [Block("The BMW Group", "heading", space_after=0.3), Block(C.BOILERPLATE.format(
        plant_countries=15, prev_year=year, group_units=f"{2.4 + (year - 2023) * 0.05:.2f}",
        moto_units=_num(205_000 + (year - 2023) * 4_500), revenue=f"{155 - (year - 2023) * 3.5:.1f}",
        employees=_num(154_000 + (year - 2023) * 1_200)), "note")]
    head = [Block(article.title, "title", space_after=0.8)]
    match rng.choice(("contact_end", "contact_first", "boilerplate_last")):
        case "contact_end":
            blocks = head + body + boilerplate + contacts
        case "contact_first":
            blocks = head + body[:1] + contacts + body[1:] + boilerplate
        case _:
            blocks = head + body + contacts + boilerplate
    return tuple(blocks)


def _dates(rng: random.Random, count: int) -> list[dt.date]:
    span = (LAST_DAY - FIRST_DAY).days
    return sorted((FIRST_DAY + dt.timedelta(days=rng.randint(0, span)) for _ in range(count)), reverse=True)


def _ids(rng: random.Random, count: int) -> list[int]:
    """Release numbers rise with time, with gaps, like the live site's."""
    numbers, n = [], 400_000
    for _ in range(count):
        n += rng.randint(20, 260)
        numbers.append(n)
    return numbers[::-1]


def _german(rng: random.Random, number: int, day: dt.date) -> tuple[MirrorArticle, tuple[Block, ...]]:
    ctx = _context(rng, day)
    ctx["date_de"] = f"{day.day}. {C.GERMAN_MONTHS[day.month - 1]} {day.year}"
    for key in ("jobs", "units"):
        ctx[key] = ctx[key].replace(",", ".")  # German thousands separator
    title = C.GERMAN_TITLE.format(**ctx)
    paragraphs = tuple(p.format(**ctx) for p in C.GERMAN_PARAGRAPHS)
    article = MirrorArticle(f"T0{number}DE", slugify(title), title, day, "de", paragraphs, "pdf", 0)
    return article, tuple([Block(title, "title", space_after=0.8), *(Block(p) for p in paragraphs),
                           *_contacts(rng)])


@lru_cache(maxsize=4)
def mirror_releases(seed: int = 0, count: int = ARTICLE_COUNT) -> tuple[Release, ...]:
    """All releases, newest first (ties by id, descending): the bundled site's 116, or `count` of them; the
    first 116 of a larger site are not the bundled ones (dates spread over the same period)."""
    if not MIN_RELEASES <= count <= MAX_RELEASES:
        raise ValueError(f"count: {count} releases, expected {MIN_RELEASES} to {MAX_RELEASES}")
    rng = random.Random(f"mirror:{seed}")
    dates, numbers = _dates(rng, count), _ids(rng, count)
    if numbers[0] >= 1_000_000:
        raise ValueError(f"count: {count} releases of seed {seed} need release numbers of seven digits")
    role_at = {pos: name for name, pos in POSITIONS.items()}
    taken: set[str] = set()
    releases = []
    for pos, (day, number) in enumerate(zip(dates, numbers)):
        arng = random.Random(f"mirror:{seed}:{number}")
        role = role_at.get(pos)
        if role == "german_release":
            article, blocks = _german(arng, number, day)
        else:
            category = CATEGORIES[arng.randrange(len(CATEGORIES))]
            title, ctx = _title_and_context(arng, category, day, taken)
            article = MirrorArticle(f"T0{number}EN", slugify(title), title, day, "en",
                                    _paragraphs(arng, category, ctx), ATTACHMENT_KIND.get(role, "pdf"), 0)
            blocks = _pdf_blocks(arng, article, category, ctx)
        taken.add(article.title)
        pages = len(paginate(list(blocks))) if article.attachment in ("pdf", "image_only") else 0
        links: tuple[tuple[str, str], ...] = ()
        if role == "offsite_link":
            links = ((OFFSITE_URL, "The BMW Group company portrait"),)
        elif role == "robots_disallowed_link":
            links = ((f"/global/internal/preview/{article.id}", "Internal preview of this release"),)
        alias = f"/global/article/detail/{article.id}/{slugify(' '.join(article.title.split()[:4]))}-update" \
            if role == "duplicate_url" else None
        releases.append(Release(replace(article, pdf_pages=pages), blocks, alias, links))
    return tuple(releases)


def mirror_articles(seed: int = 0, count: int = ARTICLE_COUNT) -> list[MirrorArticle]:
    """All mirror articles, newest first: the ground truth of the bundled site (or of a scaled one)."""
    return [r.article for r in mirror_releases(seed, count)]


def bad_cases(seed: int = 0, count: int = ARTICLE_COUNT) -> dict[str, str]:
    """Each deliberate defect of the site -> the article id (article-level cases) or the URL/path involved."""
    releases = mirror_releases(seed, count)
    out = {}
    for name, pos in POSITIONS.items():
        r = releases[pos]
        if name in ("corrupt_pdf", "image_only_pdf", "german_release", "html_only", "html_only_2"):
            out[name] = r.article.id
        elif name in ("missing_attachment", "not_pdf_attachment"):
            out[name] = r.article.attachment_path
        elif name == "duplicate_url":
            out[name] = r.alias_path
        else:
            out[name] = r.links[0][0]
    return out


BAD_CASES: dict[str, str] = bad_cases(0)
