"""The real preset at real size on the GPU machine, in resumable parts of under 9 minutes (docs/realsize.md).

    python3 scripts/real_run.py                 # every device call (carry .whl1, .whl2, ... as gpu_wheels.py says)
    python scripts/real_run.py --cpu-smoke      # here: the same steps, tiny settings, in the foreground

A call installs the carried wheels into /tmp/site (scripts/gpu_wheels.py; it returns early while parts are
missing), sets up the run folder once (a copy of this checkout whose params.yaml is presets/real.yaml with
OVERRIDES, a mirror of --releases releases built there, a git repository with a commit: dvclive and dvc exp need
one), starts the worker in a session of its own unless it is running or finished, and follows it until --budget-s
is spent. The worker outlives the call on a warm machine; the next call finds it and follows on.

The worker runs `dvc repro <stage>` stage by stage (a stage `dvc status` reports up to date is skipped, so a new
worker resumes where an earlier one stopped), commits, then runs each `dvc exp run -S model.type=<type>` of --exps.
While a command runs it samples GPU memory (nvidia-smi), the run folder's bytes (du -sb over the repository and
its .dvc/cache: hard links counted once) and the file system's use (df); for every stage DVC ran it appends to
stages.jsonl its wall time, those peaks and, for train and eval stages, their own run.json (tokens/s, time per
epoch). Each call prints the table of stages.jsonl and copies it, the worker's log tail and `dvc exp show` to $OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

SOURCE = Path(__file__).resolve().parents[1]
# What the run folder needs of this checkout: not its git data, venv, wheels, stage outputs or caches
TOP_LEVEL_SKIPPED = {".git", ".venv", ".gl", "data", "models", "reports", ".cache"}
# presets/real.yaml as the real job has it, but crawling a built mirror on 127.0.0.1 (loopback: no politeness
# needed), no LLM filter (no endpoint), random weights of Qwen3-8B's shape, no lm-eval tasks (they download data
# sets), and the preset's own advice for an H200: no activation checkpointing.
OVERRIDES = {
    "scrape": {"concurrency": 8, "delay_s": 0.0, "autothrottle": False, "timeout_s": 10},
    "filter": {"enabled": False},
    "base": {"name": "random:qwen3-8b"},
    "train": {"gradient_checkpointing": False},
    "eval": {"lm_eval_tasks": []},
}
# --cpu-smoke on top, the embedded default's sizes where the real ones take minutes on a CPU core (a 4,096-token
# row: ~2 minutes per optimizer step even at tiny width): the tiny model, one epoch of 512-token rows, short
# calibration and semantic-entropy generations
SMOKE = {
    "base": {"name": "tiny", "dtype": "float32"},
    "model": {"calibration_tokens": 4096, "laco": {"calibration_docs": 8}},
    "variants": {"full": {"epochs": 1}, "lora": {"epochs": 1}},
    "train": {"max_length": 512, "batch_size": 8, "grad_accum": 1, "eval_steps": 4},
    "eval": {"window": 512, "stride": 256, "se_prompts": 4, "max_new_tokens": 32},
}
# The exps may train one epoch (issue 13) of at least 10 optimizer steps: one epoch of the 1,000-release mirror
# (0.37M training tokens, ~100 packed rows of 4,096) is 7 steps of 2 x 8 rows, 13 of 2 x 4
EXP_SET = ["variants.full.epochs=1", "variants.lora.epochs=1", "train.grad_accum=4"]
RUNNING = re.compile(r"Running stage '([^']+)'")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")
GIB = 2**30
SITE = Path("/tmp/site")  # where scripts/gpu_wheels.py installs the carried wheels


def merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_params(mirror: Path, smoke: bool) -> dict:
    params = yaml.safe_load((SOURCE / "presets" / "real.yaml").read_text())
    params = merge(merge(params, OVERRIDES), {"scrape": {"source": f"mirror:{mirror}"}})
    return merge(params, SMOKE) if smoke else params


def not_copied(folder: str, names: list[str]) -> set[str]:
    """shutil.copytree's ignore: build outputs at the top level and in .dvc, Python caches everywhere."""
    skipped = {n for n in names if n in ("__pycache__", ".pytest_cache") or n.endswith(".egg-info")}
    if Path(folder) == SOURCE:
        # every wheel folder, whatever its set (.whl1, .whlb1, .whlu1, ...): .gitignore's /.whl*/
        skipped |= {n for n in names if n in TOP_LEVEL_SKIPPED or n.startswith(".whl")}
    elif Path(folder) == SOURCE / ".dvc":
        skipped |= {n for n in names if n in ("cache", "tmp")}
    return skipped


def stage_names(params: dict) -> list[str]:
    """The pipeline's stages in an order that runs each after what it depends on."""
    names = ["scrape", "clean", "filter", "base", "format", "prune"]
    names += [f"train@{v}" for v in params["variants"]] + [f"eval@{v}" for v in params["variants"]] + ["report"]
    return names


# --- measuring ---------------------------------------------------------------------------------------------------


def gpu_used_mib() -> list[int]:
    """Memory in use on the GPUs the run sees (CUDA_VISIBLE_DEVICES), as nvidia-smi counts it: the CUDA context and
    the allocator's cache included."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                              *([f"--id={visible}"] if visible else [])],
                             capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(x) for x in out.split() if x.isdigit()]  # nothing where nvidia-smi finds no GPU


def du_bytes(path: Path) -> int | None:
    # a file vanishing while du reads: status 1 and the total still printed
    run = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    return int(run.stdout.split()[0]) if run.stdout else None


class Sampler:
    """Samples (t, GPU MiB per GPU, du bytes of `folder`, df used bytes) every `every_s` in a thread, and on demand."""

    def __init__(self, folder: Path, log: Path, every_s: float = 2.0) -> None:
        self.folder, self.log, self.every_s = folder, log, every_s
        self.samples: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        s = {"t": time.time(), "gpu_mib": gpu_used_mib(), "du": du_bytes(self.folder),
             "df": shutil.disk_usage(self.folder).used}
        with self._lock:
            self.samples.append(s)
        with self.log.open("a") as f:
            f.write(json.dumps(s) + "\n")

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peaks(self, start: float, end: float) -> dict:
        with self._lock:
            inside = [s for s in self.samples if start <= s["t"] <= end]
        gpus = [max(col) for col in zip(*(s["gpu_mib"] for s in inside if s["gpu_mib"]))]
        du = [s["du"] for s in inside if s["du"] is not None]
        return {"gpu_peak_gib": round(max(gpus) / 1024, 2) if gpus else None,
                "gpu_peak_gib_each": [round(g / 1024, 2) for g in gpus],
                "disk_peak_gib": round(max(du) / GIB, 3) if du else None,
                "fs_used_peak_gib": round(max(s["df"] for s in inside) / GIB, 3) if inside else None}


def stage_figures(repo: Path, stage: str) -> dict:
    """A train or eval stage's own run.json (tokens/s, time per epoch, ...)."""
    kind, _, variant = stage.partition("@")
    path = repo / "metrics" / kind / variant / "run.json"
    return {"run": json.loads(path.read_text())} if variant and path.exists() else {}


def run_measured(cmd: list[str], part: str, repo: Path, root: Path, env: dict, label: str | None = None) -> int:
    """Run `cmd` in `repo`, splitting its output into stages at DVC's "Running stage" lines; one JSON line per
    stage to stages.jsonl. `label` names what runs before the first such line (all of it for the queue, whose
    stages log to `dvc queue logs`)."""
    with Sampler(repo, root / "samples.jsonl") as sampler, (root / "worker.log").open("a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        # (stage, start, restored from the run cache)
        current: tuple[str, float, bool] | None = (label, time.time(), False) if label else None

        def close(end: float, rc: int) -> None:
            if current is None:
                return
            stage, start, restored = current
            sampler.sample()
            record = {"part": part, "stage": stage, "wall_s": round(end - start, 1), "rc": rc,
                      "from_run_cache": restored, **sampler.peaks(start, time.time()),
                      **(stage_figures(repo, stage) if rc == 0 else {}), "ended": time.strftime("%H:%M:%S")}
            with (root / "stages.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")

        for line in proc.stdout:
            log.write(f"{time.strftime('%H:%M:%S')} {line}")
            log.flush()
            started = RUNNING.search(line) or RESTORED.search(line)
            if started:
                now = time.time()
                close(now, 0)
                sampler.sample()
                current = (started.group(1), now, started.re is RESTORED)
        rc = proc.wait()
        close(time.time(), rc)
    return rc


# --- the worker: runs in a session of its own, outliving the device call that started it ---------------------


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def up_to_date(stage: str, repo: Path, env: dict) -> bool:
    run = subprocess.run(dvc("status", stage), cwd=repo, env=env, capture_output=True, text=True, check=False)
    return run.returncode == 0 and "up to date" in run.stdout


def exp_records(repo: Path, root: Path, env: dict) -> None:
    """Each experiment's own figures, which `dvc exp show` lacks (run.json is a cached output, not a metric): the
    experiment is applied to the workspace, and its train and eval figures and the prune summary are copied to
    exps/<model type>/."""
    shown = json.loads(subprocess.run(dvc("exp", "show", "--json"), cwd=repo, env=env, capture_output=True,
                                      text=True, check=True).stdout)
    runs = [(e["name"], r["data"]["params"]["params.yaml"]["data"])
            for c in shown for e in c.get("experiments") or [] for r in e["revs"][:1] if r.get("data")]
    for name, params in runs:
        subprocess.run(dvc("exp", "apply", name), cwd=repo, env=env, check=True, capture_output=True)
        out = root / "exps" / params["model"]["type"]
        out.mkdir(parents=True, exist_ok=True)
        # the experiment's own variants: the checkout's metrics folder also holds the embedded default's
        for path in [*(repo / "metrics" / stage / variant / file for variant in params["variants"]
                       for stage, file in (("train", "run.json"), ("eval", "metrics.json"))),
                     repo / "metrics" / "prune.json"]:
            target = out / path.relative_to(repo / "metrics")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    subprocess.run("git checkout -q -- . && " + " ".join(dvc("checkout", "-q")), shell=True, cwd=repo, env=env,
                   check=False)


def worker(root: Path, repro: bool, exps: list[str], exp_set: list[str], env: dict, gpus: str | None = None) -> int:
    repo, state = root / "repo", root / "state.json"
    done_file = root / "done.json"
    done = json.loads(done_file.read_text()) if done_file.exists() else []
    params = yaml.safe_load((repo / "params.yaml").read_text())
    steps = [("repro", s) for s in stage_names(params) if repro] + [("commit", "")]
    # on several GPUs the exps run at once through DVC's queue (bmw experiments --gpus), else one after another
    steps += [("exps", ",".join(exps)), ("records", "")] if gpus else [("exp", t) for t in exps]
    for kind, name in steps:
        step = f"{kind} {name}".strip()
        if step in done:
            continue
        state.write_text(json.dumps({"status": "running", "step": step, "since": time.strftime("%H:%M:%S")}))
        if kind == "repro":
            rc = 0 if up_to_date(name, repo, env) else run_measured(dvc("repro", name), "repro", repo, root, env)
        elif kind == "commit":  # the baseline the exps are compared with
            rc = subprocess.run("git add -A && (git diff --cached --quiet || git commit -qm 'real run: dvc repro')",
                                shell=True, cwd=repo, env=env, check=False).returncode
        elif kind == "exps":
            cmd = [sys.executable, "-m", "bmw.cli", "experiments", "--run", "--types", name, "--gpus", gpus,
                   *(a for s in exp_set for a in ("-S", s))]
            rc = run_measured(cmd, f"exps on GPUs {gpus}", repo, root, env, label=name)
        elif kind == "records":  # a step of its own: a retry must not run the experiments again
            exp_records(repo, root, env)
            rc = 0
        else:
            sets = [a for s in [f"model.type={name}", *exp_set] for a in ("-S", s)]
            rc = run_measured(dvc("exp", "run", *sets), f"exp {name}", repo, root, env)
        if rc != 0:
            state.write_text(json.dumps({"status": "failed", "step": step, "rc": rc}))
            return rc
        done.append(step)
        done_file.write_text(json.dumps(done))
    show = subprocess.run(dvc("exp", "show", "--csv"), cwd=repo, env=env, capture_output=True, text=True,
                          check=False)
    (root / "exp_show.csv").write_text(show.stdout + show.stderr)
    state.write_text(json.dumps({"status": "done", "at": time.strftime("%H:%M:%S")}))
    return 0


# --- the driver: one device call -----------------------------------------------------------------------------


def setup(root: Path, releases: int, smoke: bool, env: dict) -> None:
    """The run folder, once: a copy of this checkout, the mirror, params.yaml, a git repository with a commit."""
    repo, mirror = root / "repo", root / f"mirror-{releases}"
    if (repo / ".setup-done").exists():
        return
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(SOURCE, repo, ignore=not_copied, symlinks=True)
    if not (mirror / "routes.json").exists():
        t = time.time()
        subprocess.run([sys.executable, "-m", "mirror.build", "--releases", str(releases), "--out", str(mirror)],
                       cwd=repo, env=env, check=True)
        print(f"mirror: {releases} releases, {du_bytes(mirror) / 2**20:.1f} MiB in {time.time() - t:.1f} s",
              flush=True)
    (repo / "params.yaml").write_text(yaml.safe_dump(run_params(mirror, smoke), sort_keys=False))
    # the schema first: a bad override fails here, naming the key, not in the worker
    subprocess.run([sys.executable, "-c", "from bmw.params import load_params; load_params()"], cwd=repo, env=env,
                   check=True)
    for cmd in ("git init -q", "git config user.email real-run@localhost", "git config user.name real-run",
                "git add -A", "git commit -qm 'real run: the checkout and params'"):
        subprocess.run(cmd, shell=True, cwd=repo, env=env, check=True)
    (repo / ".setup-done").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
    print(f"setup: {repo}; df: {shutil.disk_usage(repo).free / GIB:.1f} GiB free", flush=True)


def run_env(root: Path, smoke: bool, gpu: str, gpus: str | None = None) -> dict[str, str]:
    """The environment of the worker and of what it runs: the carried packages, offline, one GPU, a `python`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "GIT_AUTHOR_NAME": "real-run", "GIT_AUTHOR_EMAIL": "real-run@localhost",
           "GIT_COMMITTER_NAME": "real-run", "GIT_COMMITTER_EMAIL": "real-run@localhost"}
    # dvc.yaml runs `python -m stages...`: the image has only python3, so `python` is this interpreter (a script,
    # not a link: a link to a venv's python would start it outside its venv)
    shim = root / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    # DVC starts its queue workers as `dvc`: the packages carried under --target come without scripts
    (shim / "dvc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dvc "$@"\n')
    for script in ("python", "dvc"):
        (shim / script).chmod(0o755)
    path = [str(root / "repo")] + ([] if smoke else [str(SITE)])
    if not smoke:
        env["CUDA_VISIBLE_DEVICES"] = gpus or gpu  # with --gpus each stage narrows it to the GPU it leases
    return env | {"PATH": f"{shim}{os.pathsep}{env['PATH']}",
                  "PYTHONPATH": os.pathsep.join(filter(None, [*path, env.get("PYTHONPATH")]))}


def alive(pid_file: Path) -> bool:
    """Whether the worker of `pid_file` runs (a pid of its own command line: pids get reused)."""
    try:
        return b"--worker" in Path(f"/proc/{int(pid_file.read_text())}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def follow(root: Path, running, deadline: float) -> None:
    """Print each stage the worker finishes until it stops or the deadline (time.monotonic) passes."""
    seen = 0
    while time.monotonic() < deadline:
        lines = (root / "stages.jsonl").read_text().splitlines() if (root / "stages.jsonl").exists() else []
        for r in map(json.loads, lines[seen:]):
            print(f"{r['ended']} {r['part']} {r['stage']}: {r['wall_s']} s, rc {r['rc']}", flush=True)
        seen = len(lines)
        if not running():
            return
        time.sleep(5)


def table(records: list[dict]) -> str:
    rows = ["| part | stage | wall s | GPU peak GiB | disk peak GiB | fs used peak GiB | tokens/s | time per epoch s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        run = r.get("run", {})
        stage = r["stage"] + (" (run cache)" if r["from_run_cache"] else "") + ("" if r["rc"] == 0 else " FAILED")
        cells = [r["part"], stage, r["wall_s"], r["gpu_peak_gib"], r["disk_peak_gib"], r["fs_used_peak_gib"],
                 run.get("tokens_per_second", ""), run.get("time_per_epoch_s", "")]
        rows.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(rows)


def report(root: Path, out: Path | None) -> dict:
    state = json.loads((root / "state.json").read_text()) if (root / "state.json").exists() else {}
    records = [json.loads(x) for x in (root / "stages.jsonl").read_text().splitlines()] \
        if (root / "stages.jsonl").exists() else []
    print(table(records))
    print(f"worker: {state}")
    if out is not None:
        for name in ("stages.jsonl", "state.json", "exp_show.csv", "samples.jsonl"):
            if (root / name).exists():
                shutil.copy(root / name, out / name)
        if (root / "exps").is_dir():
            shutil.copytree(root / "exps", out / "exps", dirs_exist_ok=True)
        if (root / "worker.log").exists():
            (out / "worker_tail.log").write_text("".join((root / "worker.log").open().readlines()[-400:]))
        (out / "table.md").write_text(table(records) + "\n")
    return state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny settings on this machine, in the foreground")
    ap.add_argument("--root", type=Path, default=None, help="the run folder (default ~/realsize, /tmp/realsize-smoke)")
    ap.add_argument("--releases", type=int, default=None, help="mirror size (default 1000; 150 with --cpu-smoke)")
    ap.add_argument("--budget-s", type=float, default=510, help="return after this long; the worker runs on")
    ap.add_argument("--exps", default="laco,pruned", help="model types for `dvc exp run -S model.type=...` after repro")
    ap.add_argument("--no-repro", action="store_true",
                    help="only the exps (on a fresh machine: each runs what its type needs, data stages included)")
    ap.add_argument("--exp-set", action="append", default=None, help=f"more -S of each exp (default {EXP_SET})")
    ap.add_argument("--retry", action="store_true", help="start the worker again after a failed step")
    ap.add_argument("--gpus", default=None, help="e.g. 0,1: run the exps at once, one GPU each, through DVC's queue "
                                                 "(bmw experiments --gpus)")
    ap.add_argument("--gpu", default="0", help="CUDA_VISIBLE_DEVICES of the run: one GPU (the Trainer would wrap "
                                               "the model in DataParallel over several)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = (args.root or (Path("/tmp/realsize-smoke") if args.cpu_smoke else Path.home() / "realsize")).resolve()
    exps = [t for t in args.exps.split(",") if t]
    exp_set = args.exp_set if args.exp_set is not None else EXP_SET
    if args.worker:  # the driver made its environment
        return worker(root, not args.no_repro, exps, exp_set, dict(os.environ), args.gpus)
    env = run_env(root, args.cpu_smoke, args.gpu, args.gpus)
    releases = args.releases or (150 if args.cpu_smoke else 1000)
    started = time.monotonic()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if not args.cpu_smoke:
        rc = subprocess.run([sys.executable, str(SOURCE / "scripts" / "gpu_wheels.py"), "install", "--root",
                             str(SOURCE), "--target", str(SITE)], check=False).returncode
        if rc == 3:
            return 0  # parts still to carry: the next call brings them
        if rc != 0:
            return rc
    setup(root, releases, args.cpu_smoke, env)
    state_file, pid_file = root / "state.json", root / "worker.pid"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state.get("status") == "failed" and not args.retry:
        report(root, out)
        print("the worker failed (worker_tail.log); fix it, then call again with --retry", file=sys.stderr)
        return 1

    proc = None
    if state.get("status") != "done" and not alive(pid_file):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--root", str(root), "--exps", args.exps,
               *(a for s in exp_set for a in ("--exp-set", s)), *(["--no-repro"] if args.no_repro else []),
               *(["--gpus", args.gpus] if args.gpus else [])]
        with (root / "worker.out").open("a") as f:
            proc = subprocess.Popen(cmd, cwd=root / "repo", env=env, stdin=subprocess.DEVNULL, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        pid_file.write_text(str(proc.pid))
        print(f"worker {proc.pid} started", flush=True)

    def running() -> bool:  # ours: poll() also reaps it; one an earlier call started: its pid
        return proc.poll() is None if proc else alive(pid_file)

    follow(root, running, started + (float("inf") if args.cpu_smoke else args.budget_s))
    state = report(root, out)
    if state.get("status") == "running":
        print(f"worker still running ({state['step']}): call again to follow it", flush=True)
    return 1 if state.get("status") == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
