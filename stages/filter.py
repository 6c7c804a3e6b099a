"""DVC stage `filter`: data/clean/documents.jsonl -> data/filtered/ and metrics/filter.json.

Off by default (documents pass through as `not_filtered`); on, any OpenAI-compatible endpoint filters them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bmw.filter.filter import FallbackShareError, filter_documents
from bmw.io import atomic_dir, atomic_file, read_jsonl, write_json, write_jsonl
from bmw.params import load_params

SOURCE = Path("data/clean/documents.jsonl")
OUT = Path("data/filtered")
METRICS = Path("metrics/filter.json")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("httpx", "httpx2"):  # one INFO line per request is noise
        logging.getLogger(name).setLevel(logging.WARNING)
    params = load_params()
    if not SOURCE.exists():
        raise SystemExit(f"{SOURCE} is missing: run the clean stage first")
    try:
        run = filter_documents(read_jsonl(SOURCE), params.filter)
    except FallbackShareError as e:
        raise SystemExit(str(e)) from None
    with atomic_dir(OUT) as out, atomic_file(METRICS) as metrics:  # installed together, once all is written
        write_jsonl(out / "documents.jsonl", run.documents)
        write_jsonl(out / "rejected.jsonl", run.rejected)
        write_json(out / "summary.json", run.summary)
        write_json(metrics, run.metrics)
    logging.getLogger("stages.filter").info(
        "%d documents in, %d out (%d kept, %d fallback, %d rejected, %d not filtered)",
        run.summary["documents_in"], run.summary["documents_out"], run.summary["kept"],
        run.summary["fallback"], run.summary["rejected"], run.summary["not_filtered"],
    )


if __name__ == "__main__":
    main()
