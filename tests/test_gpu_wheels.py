"""scripts/gpu_wheels.py: the Requires-Dist walk, folders that install only once every part has arrived, and Unsloth's
set, layered over the project's."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_wheels", ROOT / "scripts" / "gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)


def test_walk_follows_markers_extras_and_stops_at_what_the_image_provides():
    dists = {
        "app": ("1.0", ["lib[fast]>=2", "torch>=2", "winonly; sys_platform == 'win32'", "old; python_version < '3.12'",
                        "nvidia-ml-py"]),
        "lib": ("2.1", ["speedup; extra == 'fast'", "docs-tool; extra == 'docs'", "numpy"]),
        "speedup": ("0.3", []),
    }
    found = gpu_wheels.walk(dists, [Requirement("app")], fetch_pinned=None)
    assert found == {"app": "1.0", "lib": "2.1", "speedup": "0.3"}  # torch, numpy, nvidia-*: the image's
    with pytest.raises(SystemExit, match="lib==2.1 in the venv does not satisfy lib>=3"):
        gpu_wheels.walk(dists, [Requirement("app"), Requirement("lib>=3")], fetch_pinned=None)
    with pytest.raises(SystemExit, match="missing .* is not installed in the venv and not in PINNED"):
        gpu_wheels.walk({"app": ("1.0", ["missing"])}, [Requirement("app")], fetch_pinned=None)


def test_the_projects_roots_leave_out_what_the_gpu_machine_does_not_run():
    names = {r.name for r in gpu_wheels.roots()}
    assert {"dvc", "dvclive", "trl", "datasets", "pydantic", "liger-kernel", "scrapy"} <= names
    assert not names & {"lm-eval", "dvc-s3", "unsloth"}


def test_the_bench_and_unsloth_sets_start_from_what_the_bench_imports():
    """The bench's set: the project's dependencies the bench imports and Liger, none of the pipeline's (DVC,
    Scrapy, ...), so it travels in one device call; Unsloth's: the same with the unsloth extra, over the bench's."""
    bench, unsloth = gpu_wheels.ENVS["bench"], gpu_wheels.ENVS["unsloth"]
    names = {r.name for r in gpu_wheels.roots(extras=bench.extras, only=bench.only)}
    assert {"transformers", "trl", "peft", "datasets", "pydantic", "torchao", "liger-kernel"} <= names
    assert not names & {"dvc", "dvclive", "scrapy", "pypdf", "sentence-transformers", "unsloth"}
    assert {canonicalize_name(n) for n in bench.only} <= {canonicalize_name(r.name) for r in gpu_wheels.roots()}
    assert {r.name for r in gpu_wheels.roots(extras=unsloth.extras, only=unsloth.only)} == names | {"unsloth"}
    assert unsloth.base == "bench" and unsloth.prefix == ".whlu" and str(unsloth.target) == "/tmp/site-unsloth"
    assert bench.prefix == ".whlb" and str(bench.target) == "/tmp/site-bench"


def test_a_layered_set_carries_what_the_base_lacks_or_has_at_another_version():
    """Unsloth's walk against the project's: its own packages and its pins; torchvision is the image's (built
    against the image's torch), like torch."""
    dists = {
        "unsloth": ("2026.10.9", ["transformers<=5.17", "xformers", "torchvision", "torch<2.15", "pydantic"]),
        "transformers": ("5.17.0", ["pydantic"]), "xformers": ("0.0.35", ["torch>=2.10"]), "pydantic": ("2.14.3", []),
    }
    packages = gpu_wheels.walk(dists, [Requirement("unsloth")], fetch_pinned=None)
    assert packages == {"unsloth": "2026.10.9", "transformers": "5.17.0", "xformers": "0.0.35", "pydantic": "2.14.3"}
    project = {"transformers": "5.23.0", "pydantic": "2.14.3", "dvc": "3.67.1"}
    assert gpu_wheels.differing(packages, project) == {"unsloth": "2026.10.9", "transformers": "5.17.0",
                                                       "xformers": "0.0.35"}


def _wheel(folder: Path, name: str, requires: list[str], payload: bytes = b"", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel: module `name` (VALUE = its payload's length) and its dist-info."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {len(payload)}\n".encode(), f"{name}/data.bin": payload,
             f"{info}/METADATA": "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                          *(f"Requires-Dist: {r}\n" for r in requires)]).encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def record(data: bytes) -> str:
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    rows = [f"{path},{record(data)},{len(data)}" for path, data in files.items()] + [f"{info}/RECORD,,"]
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:  # stored: the sizes below are the payloads'
        for name_, data in files.items():
            z.writestr(name_, data)
        z.writestr(f"{info}/RECORD", "\n".join(rows) + "\n")
    return path


def test_folders_install_once_every_part_is_there_and_a_split_wheel_is_put_back_together(tmp_path):
    src, out, target = tmp_path / "src", tmp_path / "repo", tmp_path / "site"
    src.mkdir()
    out.mkdir()
    wheels = [_wheel(src, "alpha", ["beta>=1"], os.urandom(3000)), _wheel(src, "beta", [], os.urandom(9000))]
    folders = gpu_wheels.write_folders(wheels, out, max_bytes=4000)
    assert [f.name for f in folders] == [f".whl{i}" for i in range(1, len(folders) + 1)] and len(folders) >= 3
    assert all(sum(f.stat().st_size for f in folder.iterdir() if f.name != gpu_wheels.MANIFEST) <= 4000
               for folder in folders)
    assert sorted(p.name for p in out.glob(".whl*/beta-1.0-py3-none-any.whl.*")) == [
        f"beta-1.0-py3-none-any.whl.{i:03d}" for i in range(3)]

    held = folders[-1].rename(tmp_path / "held")  # not carried yet
    assert gpu_wheels.install(out, target) == 3 and not target.exists()
    held.rename(folders[-1])
    assert gpu_wheels.install(out, target) == 0
    code = "import alpha, beta; print(alpha.VALUE, beta.VALUE)"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["3000", "9000"]
    assert gpu_wheels.install(out, target) == 0  # the stamp: installed once


def test_an_unmet_requirement_fails_the_install_naming_it(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "repo"
    src.mkdir()
    out.mkdir()
    gpu_wheels.write_folders([_wheel(src, "gamma", ["no-such-package-anywhere>=1"])], out, max_bytes=10_000)
    assert gpu_wheels.install(out, tmp_path / "site") == 1
    assert "gamma needs no-such-package-anywhere>=1: not installed" in capsys.readouterr().err


def test_unsloths_set_installs_over_the_projects_and_is_checked_with_it(tmp_path, capsys):
    """.whlu folders beside .whl ones: each install takes its own set; Unsloth's waits for the project's site, its
    packages shadow the project's, and a requirement of a project package that an override breaks is reported."""
    src, out, site, site_unsloth = tmp_path / "src", tmp_path / "repo", tmp_path / "site", tmp_path / "site-unsloth"
    src.mkdir()
    out.mkdir()
    project = gpu_wheels.write_folders([_wheel(src, "alpha", ["beta>=1"]), _wheel(src, "beta", [])], out, 10_000)
    unsloth = gpu_wheels.write_folders([_wheel(src, "sloth", ["alpha", "beta>=2"]),
                                        _wheel(src, "beta", [], b"new", "2.0")], out, 10_000, prefix=".whlu")
    assert [f.name for f in project] == [".whl1"] and [f.name for f in unsloth] == [".whlu1"]
    assert gpu_wheels.folders_of(out, ".whl") == project  # .whlu1 is not the project's third folder
    with pytest.raises(SystemExit, match="nothing installed there yet"):
        gpu_wheels.install(out, site_unsloth, ".whlu", below=(site,))
    assert gpu_wheels.install(out, site) == 0
    assert gpu_wheels.install(out, site_unsloth, ".whlu", below=(site,)) == 0
    path = os.pathsep.join(map(str, (site_unsloth, site)))
    code = "import alpha, beta, sloth, importlib.metadata as m; print(beta.VALUE, m.version('beta'))"
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path},
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["3", "2.0"]  # Unsloth's beta over the project's

    gpu_wheels.write_folders([_wheel(src, "beta", [], version="0.5")], out, 10_000, prefix=".whlu")
    assert gpu_wheels.install(out, tmp_path / "site-old-beta", ".whlu", below=(site,)) == 1
    assert "alpha needs beta>=1: 0.5 is installed" in capsys.readouterr().err
