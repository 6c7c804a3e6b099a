"""English or German, from the share of each language's most frequent function words. Deterministic."""

from __future__ import annotations

import re

STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and of to a in is for with on that as at by from are was be this will has have its it an which "
        "also their or been were more than not into about after over".split()),
    "de": frozenset(
        "der die und das den dem des zu mit ist im für auf sich ein eine einer einem nicht als auch werden wird "
        "bei aus von sind wurde hat haben noch nach über vom zum zur".split()),
}
MIN_SHARE = 0.05  # prose in either language is well above this; tables and lists of names are not
TOKEN = re.compile(r"[^\W\d_]+")


def language_shares(text: str) -> dict[str, float]:
    """Per language, the share of the text's words that are its function words."""
    words = [w.lower() for w in TOKEN.findall(text)]
    if not words:
        return {lang: 0.0 for lang in STOPWORDS}
    return {lang: sum(w in stop for w in words) / len(words) for lang, stop in STOPWORDS.items()}


def detect_language(text: str) -> str:
    """"en", "de", or "unknown" when neither reaches MIN_SHARE. Ties go to the alphabetically first."""
    shares = language_shares(text)
    best = max(sorted(shares), key=lambda lang: shares[lang])
    return best if shares[best] >= MIN_SHARE else "unknown"
