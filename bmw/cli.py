"""`bmw <command> [args]`: the project's command line; each command is a module with `main(argv)`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "table": ("bmw.report.table", "print the variant table of the workspace's metrics"),
    "experiments": ("bmw.report.experiments", "the cross-type table from DVC experiments (--run to run them)"),
    "stage-times": ("bmw.report.stage_times", "re-run every stage once and print its wall time"),
    "doctor": ("bmw.team.doctor", "preflight checks for sharing through the DVC remote (--json, --for-queue)"),
    "bench": ("bmw.bench.cli", "time training and evaluation at a shape (tiny | qwen3-8b) against plain TRL (JSON)"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print("usage: bmw <command> [args]\n\ncommands:", file=sys.stderr)
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<12} {help_}", file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    module, _ = COMMANDS[argv[0]]
    importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    main()
