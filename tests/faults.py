"""The fault suite's ledger (tests/test_faults_*.py).

Every injected fault is checked with `LEDGER.check(area, fault, survived, lost)`: `survived` - the stage finished,
or stopped with the documented error, and left no wrong or half-written output; `lost` - good records (articles,
documents, chunks, training steps) that are gone without a failure row or reject reason saying why. A check fails
its test unless the fault was survived with nothing lost; the totals are printed at the end of the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    area: str
    fault: str
    survived: bool
    lost: int


class Ledger:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def check(self, area: str, fault: str, survived: bool, lost: int = 0, detail: object = "") -> None:
        self.outcomes.append(Outcome(area, fault, bool(survived), lost))
        assert survived, f"{area}: {fault}: not survived {detail}"
        assert lost == 0, f"{area}: {fault}: {lost} records lost {detail}"

    def summary(self) -> str:
        by_area = Counter(o.area for o in self.outcomes)
        survived = sum(o.survived for o in self.outcomes)
        lost = sum(o.lost for o in self.outcomes)
        areas = ", ".join(f"{area} {n}" for area, n in sorted(by_area.items()))
        return (f"fault suite: {len(self.outcomes)} faults injected, {survived} survived, {lost} records lost "
                f"({areas})")


LEDGER = Ledger()
