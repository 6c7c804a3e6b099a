"""A persistent cache of parsed model answers: one small JSON file per (model, prompt version, chunk).

Files are written atomically (temp file + os.replace), so concurrent writers of one key are safe and a reader
sees a whole file or none. Only well-formed answers are stored; failed requests are asked again next run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bmw.filter.answer import Answer, MalformedAnswer, answer_from_dict
from bmw.io import sha256_bytes, write_json

log = logging.getLogger(__name__)


def cache_key(model: str, prompt_version: int, chunk: str) -> str:
    payload = json.dumps([model, prompt_version, chunk], ensure_ascii=False)
    return sha256_bytes(payload.encode("utf-8"))


class ResponseCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"  # fan out: one flat folder of 100k files is slow to list

    def get(self, key: str) -> Answer | None:
        path = self.path(key)
        try:
            return answer_from_dict(json.loads(path.read_text(encoding="utf-8"))["answer"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, MalformedAnswer) as e:
            log.warning("ignoring unreadable cache entry %s (%s)", path, e)
            return None

    def put(self, key: str, answer: Answer, model: str, prompt_version: int) -> None:
        write_json(self.path(key), {"model": model, "prompt_version": prompt_version, "answer": answer.to_dict()})
