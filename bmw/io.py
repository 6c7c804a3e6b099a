"""Deterministic, crash-safe file output shared by every stage."""

from __future__ import annotations

import ctypes
import errno
import filecmp
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


def dumps_line(obj: Any) -> str:
    """One JSONL line: stable key order, real UTF-8, no embedded newline."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n"


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temp file beside `path` and move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are shared through git and the DVC cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` for the block to write by any means; moved onto `path` only if the block succeeds.

    Nested with `atomic_dir` and other `atomic_file`s, a stage's outputs are all computed before the first of them
    is installed, and then installed one right after the other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # this file system cannot
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(a), None, str(b))


def _remove_stale(out_dir: Path) -> None:
    """Temp folders of earlier writes of `out_dir` that a kill interrupted (a model's can be gigabytes)."""
    name = re.compile(rf"\.{re.escape(out_dir.name)}\.[a-z0-9_]{{8}}\.(?:tmp|old)")  # as mkdtemp names them
    for stale in out_dir.parent.iterdir():
        if name.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_dir(out_dir: str | Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`, empty but for copies of the files named in `keep` that `out_dir`
    holds (files the stage does not write: the .gitignore DVC keeps in a metrics folder); if the block succeeds
    it replaces `out_dir` whole.

    The swap is one atomic exchange where the system has one (Linux): a reader, or a kill at any moment, sees
    the old folder or the new one, never a mix and never none."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out_dir)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    tmp.chmod(0o755)
    try:
        for name in keep:
            if (out_dir / name).is_file():
                shutil.copy2(out_dir / name, tmp / name)
        yield tmp
        if not out_dir.exists():
            tmp.rename(out_dir)
        elif not _exchange(tmp, out_dir):
            # a folder cannot be os.replace'd onto a non-empty one: move the old one aside first
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
            out_dir.rename(old / "x")
            tmp.rename(out_dir)
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the unfinished folder, or the old one after an exchange


def link_onto(source: Path, target: Path) -> bool:
    """Replace `target` with a hard link to `source` (atomically); False, nothing changed, where the two cannot be
    linked (another file system).

    Why: DVC links an output's file to its cache object only when it adds the object; a file whose bytes it has
    cached already (the base's tokenizer in every variant, a plan's tensors) stays a second copy on disk. Linked to
    the cached file, it is one inode. The link is made under a temp name beside `target`, not through atomic_file,
    whose chmod would reach the shared inode."""
    link = target.with_name(f".{target.name}.{os.getpid()}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(source, link)
    except OSError:
        return False
    os.replace(link, target)
    return True


def link_identical_files(folder: Path, source_folder: Path) -> None:
    """Hard-link each file of `folder` onto the file of the same name in `source_folder` where their bytes are
    equal (`link_onto`). Compared in buffers, stopping at the first difference: a fine-tuned checkpoint beside the
    base's differs within its first megabytes."""
    for target in sorted(p for p in folder.iterdir() if p.is_file()):
        source = source_folder / target.name
        if source.is_file() and filecmp.cmp(source, target, shallow=False):
            link_onto(source, target)


def write_jsonl(path: str | Path, rows: Iterable[dict], sort_key: str | tuple[str, ...] | None = None) -> int:
    rows = list(rows)
    if sort_key is not None:
        keys = (sort_key,) if isinstance(sort_key, str) else sort_key
        rows.sort(key=lambda r: tuple("" if r.get(k) is None else str(r.get(k)) for k in keys))
    with atomic_open(path) as f:
        for row in rows:
            f.write(dumps_line(row))
    return len(rows)


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    """`sort_keys=False` keeps the dict's order: a DVC metrics file whose headline figures come first."""
    with atomic_open(path) as f:
        json.dump(obj, f, ensure_ascii=False, sort_keys=sort_keys, indent=2)
        f.write("\n")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same on every machine and Python run (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
