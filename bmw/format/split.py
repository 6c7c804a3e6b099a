"""Train/validation/test assignment by a salted stable hash of the article id.

Each id's split depends only on the id, the seed and the fractions, so adding articles never moves existing ones.
"""

from __future__ import annotations

from typing import Iterable

from bmw.io import stable_hash
from bmw.params import SplitParams

SPLITS = ("train", "validation", "test")


def assign_split(article_id: str, split: SplitParams, seed: int) -> str:
    u = stable_hash(f"split:{seed}:{article_id}") / 2**64  # uniform in [0, 1)
    if u < split.test:
        return "test"
    if u < split.test + split.validation:
        return "validation"
    return "train"


def split_documents(docs: Iterable[dict], split: SplitParams, seed: int) -> dict[str, list[dict]]:
    """Documents per split, each list sorted by id."""
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for doc in sorted(docs, key=lambda d: d["id"]):
        out[assign_split(doc["id"], split, seed)].append(doc)
    return out
