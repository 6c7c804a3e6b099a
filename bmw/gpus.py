"""One GPU per stage process while experiments run in parallel (`bmw experiments --run --gpus 0,1`).

DVC's queue workers know nothing of GPUs: every worker runs its experiment's stages with the environment that
`dvc queue start` had. `bmw experiments` puts the GPU ids in BMW_GPUS; each stage that uses a GPU calls
`lease_gpu()` before torch initialises CUDA. It takes an exclusive lock (flock) on the lock file of the first free
id, waiting while every id is taken, and narrows CUDA_VISIBLE_DEVICES to that id. The lock belongs to the process
until it exits, so a finished, crashed or killed stage frees its GPU, and no two stages share one. The lock files
live in a folder of the host (BMW_GPU_LOCKS, default <tmp>/bmw-gpu-locks), so experiments of several clones on one
host share the ids too. Without BMW_GPUS nothing changes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import tempfile
import time
from pathlib import Path


ENV_IDS = "BMW_GPUS"
ENV_LOCKS = "BMW_GPU_LOCKS"
log = logging.getLogger(__name__)
_held: list[int] = []  # the lock's file descriptor, open for the life of the process


def gpu_ids(value: str | None) -> list[str]:
    """The ids of a BMW_GPUS / --gpus value: '0,1' -> ['0', '1']; each a device index as nvidia-smi numbers it."""
    ids = [i.strip() for i in (value or "").split(",") if i.strip()]
    bad = [i for i in ids if not i.isdigit()]
    if bad or len(set(ids)) != len(ids):
        raise ValueError(f"GPU ids must be distinct device indices such as 0,1 (got {value!r})")
    return ids


def lock_folder() -> Path:
    return Path(os.environ.get(ENV_LOCKS) or Path(tempfile.gettempdir()) / "bmw-gpu-locks")


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking at the folder
    return fd


def lease_gpu(poll_s: float = 2.0) -> str | None:
    """Take a free GPU of BMW_GPUS for this process and make it the only one CUDA shows; None without BMW_GPUS.
    Waits (logging once) while all are leased. Repeated calls return the GPU already held."""
    try:
        ids = gpu_ids(os.environ.get(ENV_IDS))
    except ValueError as e:
        raise ValueError(f"{ENV_IDS}: {e}") from None
    if not ids:
        return None
    if _held:
        return os.environ["CUDA_VISIBLE_DEVICES"]
    torch = sys.modules.get("torch")  # not imported: CUDA cannot be initialised yet (`bmw experiments` never needs it)
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("lease_gpu() must run before CUDA is initialised: CUDA_VISIBLE_DEVICES is read once")
    folder = lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for gpu in ids:
            fd = _try_lock(folder / f"gpu-{gpu}.lock")
            if fd is not None:
                _held.append(fd)
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
                waited = f" after waiting {time.monotonic() - waiting_since:.0f} s" if waiting_since else ""
                log.info("leased GPU %s of %s%s", gpu, ",".join(ids), waited)
                return gpu
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info("every GPU of %s is leased: waiting for one", ",".join(ids))
        time.sleep(poll_s)
