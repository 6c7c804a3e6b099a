"""The Unsloth peer of `bmw bench model`: each run in a child process (bench.model.unsloth_run) with Unsloth's
environment first on its path; its row comes back, or one that records exactly why the child failed.

Unsloth cannot share the bench's process: it patches transformers, PEFT and TRL for the whole process when imported,
and it pins older ones (transformers 5.17, trl 1.15, datasets 4.8.5: constraints-unsloth.txt) than the project's.
On the GPU machine its wheels (`scripts/gpu_wheels.py collect --env unsloth`: .whlu1, .whlu2) install into
/tmp/site-unsloth, layered over the bench's /tmp/site-bench: the child runs with PYTHONPATH=/tmp/site-unsloth:<the
bench's own PYTHONPATH>, from the repository root.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import asdict
from pathlib import Path

import torch

from bench.model.train import RunSpec

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SITE = "/tmp/site-unsloth"  # gpu_wheels.ENVS["unsloth"].target
TAIL, TAIL_LINES = 4000, 400  # of the child's output, kept in a failed row


def last_exception(output: str) -> str | None:
    """The exception line of the last traceback in `output`, e.g. "ModuleNotFoundError: No module named 'unsloth'":
    the first unindented line after the last "Traceback" header."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    if not starts:
        return None
    return next((line for line in lines[starts[-1] + 1:] if line and not line[0].isspace()), None)


def exit_reason(returncode: int) -> str:
    return f"killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exit status {returncode}"


def _tee(stream, kept: deque) -> None:
    for line in stream:
        sys.stderr.write(line)
        kept.append(line)


def run_unsloth(spec: RunSpec, python: str, site: str, timeout: float | None) -> dict:
    """Time `spec` (mode unsloth) in a child process of `python` with `site` first on PYTHONPATH, killed after
    `timeout` seconds. Its row, or one with `error`: the child's exception line (an import error, a missing kernel,
    out of memory), else how it ended; and `output_tail`, the end of what it printed (passed on to stderr as it
    comes)."""
    row = {"run": spec.name, **asdict(spec)}
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the child gets the GPU memory the bench's earlier runs left cached
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))}
    kept: deque = deque(maxlen=TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="bench-unsloth-") as tmp:
        out = Path(tmp) / "row.json"
        command = [python, "-m", "bench.model.unsloth_run", "--spec", json.dumps(asdict(spec)), "--out", str(out)]
        # a session of its own, killed whole at the end: compile workers left behind would hold the pipe open
        with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", start_new_session=True) as child:
            reader = threading.Thread(target=_tee, args=(child.stdout, kept), daemon=True)
            reader.start()
            try:
                child.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            with contextlib.suppress(ProcessLookupError):  # what is left of its session, or all of it
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            reader.join(timeout=10)
        output = "".join(kept)
        if child.returncode == 0 and out.is_file():
            found = json.loads(out.read_text())
            return found | ({"output_tail": output[-TAIL:]} if "error" in found else {})
    if timed_out:
        error = f"TimeoutExpired: killed after {timeout:.0f} s (--budget-s)"
    else:
        error = last_exception(output) or f"{exit_reason(child.returncode)}, no traceback"
    log.error("%s failed: %s", spec.name, error)
    return row | {"error": error[:300], "output_tail": output[-TAIL:]}
