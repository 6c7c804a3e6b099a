"""`bmw stage-times`: re-run every stage once (`dvc repro -s -f`) and print its wall time as a table.

Run it after a complete `dvc repro`; it forces each stage in pipeline order, so the workspace ends up as it was.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from bmw.report.tables import markdown_table

PIPELINE = ("scrape", "clean", "filter", "format", "base", "prune", "train", "eval", "report")


def stage_names() -> list[str]:
    """Every stage of dvc.yaml (train@<variant> and eval@<variant> expanded) in pipeline order."""
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], check=True, capture_output=True, text=True).stdout
    names = [line.strip() for line in out.splitlines() if line.strip()]
    order = {stage: i for i, stage in enumerate(PIPELINE)}
    return sorted(names, key=lambda name: order.get(name.split("@")[0], len(PIPELINE)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw stage-times", description=__doc__)
    parser.add_argument("stages", nargs="*", help="stages to time (default: all, in pipeline order)")
    args = parser.parse_args(argv)
    rows, total = [], 0.0
    for stage in args.stages or stage_names():
        began = time.perf_counter()
        # --no-run-cache: a forced stage would otherwise be restored from the run cache in seconds, not run
        subprocess.run(["dvc", "repro", "-s", "-f", "--no-run-cache", "-q", stage], check=True)
        seconds = time.perf_counter() - began
        total += seconds
        rows.append([stage, f"{seconds:.1f}"])
        print(f"{stage}: {seconds:.1f} s", flush=True)
    print(markdown_table(["stage", "wall time (s)"], rows + [["total", f"{total:.1f}"]]))


if __name__ == "__main__":
    main()
