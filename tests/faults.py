"""The fault suite's ledger (tests/test_faults_*.py).

Every injected fault is checked with `LEDGER.check(area, fault, survived, lost)`: `survived` - the stage finished,
or stopped with the documented error, and left no wrong or half-written output; `lost` - good records (articles,
documents, chunks, training steps) that are gone without a failure row or reject reason saying why. A check fails
its test unless the fault was survived with nothing lost; the totals are printed at the end of the run.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


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


def snapshot(root: Path, outputs: list[str]) -> dict[str, bytes]:
    """The files of each output (a file, or a folder's files by relative path) under `root`."""
    files = {}
    for out in outputs:
        path = root / out
        if path.is_file():
            files[out] = path.read_bytes()
        elif path.is_dir():
            files |= {f"{out}/{f.relative_to(path)}": f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}
    return files


def whole_or_absent(root: Path, outputs: list[str], reference: dict[str, bytes]) -> list[str]:
    """What of `outputs` is visible but differs from the finished run's `reference`: [] when each output is
    either absent or exactly as a finished run leaves it."""
    seen = snapshot(root, outputs)
    bad = []
    for out in outputs:
        mine = {k: v for k, v in seen.items() if k == out or k.startswith(out + "/")}
        theirs = {k: v for k, v in reference.items() if k == out or k.startswith(out + "/")}
        if mine and mine != theirs:
            bad.append(out)
    return bad


def watch(root: Path, outputs: list[str], reference: dict[str, bytes], seconds: float) -> set[str]:
    """Look at the outputs again and again for `seconds`: the outputs ever seen half-written."""
    bad: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            bad |= set(whole_or_absent(root, outputs, reference))
        except FileNotFoundError:  # a folder swapped while it was read: look again
            pass
        time.sleep(0.002)
    return bad


# Secrets a careless stage could write out (a traceback with its environment, a logged request): every stage the
# fault suite runs gets them, and every file it leaves is searched for them.
SECRETS = {"OPENAI_API_KEY": "sk-fault-suite-7d1c9e-NEVER-WRITE-ME",
           "AWS_SECRET_ACCESS_KEY": "aws-fault-suite-3b8f20-NEVER-WRITE-ME",
           "HF_TOKEN": "hf_faultsuite5a6e71NEVERWRITEME"}


def files_with_secrets(*roots: Path) -> list[str]:
    """Every file under `roots` holding one of SECRETS (as text or bytes)."""
    needles = [v.encode() for v in SECRETS.values()]
    return [str(f) for root in roots for f in sorted(root.rglob("*"))
            if f.is_file() and any(n in f.read_bytes() for n in needles)]
