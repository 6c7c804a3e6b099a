"""The crash-safe progress log of one crawl: one JSON line per finished listing entry.

A line is `{"id", "article": record | null, "failures": [...]}`, appended only once the entry is done
(its article page parsed and its PDFs stored, or its page failed), then flushed and fsynced. A SIGKILL can
only cut the last line short; `Journal` drops such a tail before appending and `read_journal` ignores it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from bmw.io import dumps_line

log = logging.getLogger(__name__)

JOURNAL_NAME = "journal.jsonl"


def _complete_prefix(data: bytes) -> bytes:
    return data[: data.rfind(b"\n") + 1]


def read_journal(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    if len(_complete_prefix(data)) < len(data):
        log.warning("%s: ignoring a cut-off last line (crawl killed mid-write)", path)
    return [json.loads(line) for line in _complete_prefix(data).decode("utf-8").splitlines() if line.strip()]


class Journal:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("r+b") as f:
                f.truncate(len(_complete_prefix(f.read())))
        self._file = path.open("a", encoding="utf-8", newline="\n")
        self._lock = threading.Lock()  # appends may come from worker threads: lines must not interleave
        self.appended = 0

    def append(self, entry: dict) -> int:
        """Append one entry durably; returns how many this journal object has appended."""
        line = dumps_line(entry)
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self.appended += 1
            return self.appended

    def close(self) -> None:
        self._file.close()
