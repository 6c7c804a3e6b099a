"""A doctor finding: what is wrong (or was verified), how bad it is, and how to fix it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["blocker", "warning", "ok"]


@dataclass(frozen=True)
class Finding:
    check: str  # dotted id, e.g. "remote.committed"
    severity: Severity
    problem: str  # one line; for "ok", what was verified
    fix: str = ""  # one line; empty for "ok"


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(f.severity == "blocker" for f in findings) else 0


def summary(findings: list[Finding]) -> str:
    blockers = sum(f.severity == "blocker" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    return f"{blockers} blocker{'s' * (blockers != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def render_text(findings: list[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=0)
    lines = [f"bmw doctor: {summary(findings)}"]
    for f in findings:
        lines.append(f"{f.severity.upper() if f.severity != 'ok' else 'ok':<8} {f.check:<{width}}  {f.problem}")
        if f.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {f.fix}")
    return "\n".join(lines) + "\n"


def render_json(findings: list[Finding]) -> str:
    doc = {"ok": exit_status(findings) == 0, "summary": summary(findings), "findings": [asdict(f) for f in findings]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
