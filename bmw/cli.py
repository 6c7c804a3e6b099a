"""`bmw <command> [args]`: every operator command of the project; each is a module with `main(argv)`.

`bmw <command> --help` explains one. `mirror` and `bench` are commands of a checkout: their code sits beside the
product package (`mirror/`, `bench/`), so they run from the repository, as `dvc` does.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

COMMANDS: dict[str, tuple[str, str]] = {
    "table": ("bmw.report.table", "print the variant table of the workspace's metrics"),
    "experiments": ("bmw.report.experiments", "the cross-type table of DVC experiments (--run: run one per type)"),
    "stage-times": ("bmw.report.stage_times", "re-run every stage once and print its wall time"),
    "doctor": ("bmw.team.doctor", "preflight checks for sharing through the DVC remote (--json, --for-queue)"),
    "runcache": ("bmw.team.runcache", "push the run cache with the objects its records name"),
    "bench model": ("bench.model.cli", "training and evaluation throughput at a model shape, vs plain and tuned TRL"),
    "bench scrape": ("bench.scrape", "crawl throughput against the bundled mirror on 127.0.0.1"),
    "bench clean": ("bench.clean", "PDF cleaning throughput on the mirror's PDFs, 1 worker and clean.workers"),
    "bench remote": ("bench.remote", "dvc push / pull times against an S3 server on 127.0.0.1"),
    "bench heal": ("bench.heal", "held-out perplexity and KL of reduced types, healed (model.heal) and not"),
    "mirror build": ("mirror.build", "regenerate the bundled press-site mirror (mirror/site), or build a scaled one"),
    "mirror serve": ("mirror.server", "serve the mirror on 127.0.0.1 for browsing"),
    "mirror tokenizer": ("mirror.tokenizer", "retrain the tiny base's tokenizer on the mirror's corpus"),
}
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository, in an editable install


def usage() -> str:
    lines = ["usage: bmw <command> [args]   (bmw <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def resolve(argv: list[str]) -> tuple[str, list[str]] | None:
    """The module of the command `argv` starts with (one word, or a group and a word) and its own arguments."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return COMMANDS[name][0], argv[words:]
    return None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    found = resolve(argv)
    if found is None:
        print(usage(), file=sys.stderr)
        raise SystemExit(0 if {"-h", "--help"} & set(argv[:2]) else 2)
    module, args = found
    if module.split(".")[0] in ("bench", "mirror"):
        if not (CHECKOUT / module.split(".")[0]).is_dir():
            raise SystemExit(f"bmw {' '.join(argv[:2])}: needs a checkout of the repository (pip install -e .)")
        sys.path.insert(0, str(CHECKOUT))
    importlib.import_module(module).main(args)


if __name__ == "__main__":
    main()
