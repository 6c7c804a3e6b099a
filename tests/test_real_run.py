"""scripts/real_run.py: its params pass the schema, its stage list is the pipeline's, its measurements split per stage."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml

from bmw.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("real_run", ROOT / "scripts" / "real_run.py")
real_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_run)


def test_the_run_params_are_the_real_preset_with_the_overrides_and_pass_the_schema(tmp_path):
    (tmp_path / "routes.json").write_text(json.dumps({"/": {"file": "overview/page-1.html"}}))
    real = yaml.safe_load((ROOT / "presets" / "real.yaml").read_text())
    for smoke in (False, True):
        params = parse_params(real_run.run_params(tmp_path, smoke))
        assert params.scrape.mirror_dir == tmp_path and not params.filter.enabled
        assert params.eval.lm_eval_tasks == [] and params.format == parse_params(real).format
        assert params.base.name == ("tiny" if smoke else "random:qwen3-8b")
        assert params.variants["full"].epochs == (1 if smoke else real["variants"]["full"]["epochs"])


def test_the_worker_runs_every_stage_of_the_pipeline_after_its_dependencies():
    params = yaml.safe_load((ROOT / "presets" / "real.yaml").read_text())
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    names = real_run.stage_names(params)
    expanded = {f"{name}@{v}" if "foreach" in stage else name for name, stage in pipeline.items()
                for v in (params["variants"] if "foreach" in stage else [None])}
    assert sorted(names) == sorted(expanded)
    outputs = {}  # path -> stage that writes it
    for name, stage in pipeline.items():
        body = stage.get("do", stage)
        for v in params["variants"] if "foreach" in stage else [None]:
            for out in body.get("outs", []):
                path = next(iter(out)) if isinstance(out, dict) else out
                outputs[path.replace("${key}", v or "")] = f"{name}@{v}" if v else name
    for name, stage in pipeline.items():
        body = stage.get("do", stage)
        for v in params["variants"] if "foreach" in stage else [None]:
            me = f"{name}@{v}" if v else name
            for dep in body["deps"]:
                dep = dep.replace("${key}", v or "")
                writers = {s for path, s in outputs.items() if dep == path or dep.startswith(path + "/")
                           or path.startswith(dep + "/")}
                assert all(names.index(w) < names.index(me) for w in writers), (me, dep, writers)


def test_a_commands_output_is_split_into_stages_with_their_peaks(tmp_path):
    repo = tmp_path / "repo"
    (repo / "metrics" / "train" / "full").mkdir(parents=True)
    (repo / "metrics" / "train" / "full" / "run.json").write_text('{"tokens_per_second": 123.4}')
    script = ("import time\n"
              "print(\"Running stage 'prune':\", flush=True); time.sleep(0.4)\n"
              "open('big', 'wb').write(bytes(30_000_000))\n"
              "print(\"Stage 'train@full' is cached - skipping run, checking out outputs\", flush=True)\n"
              "time.sleep(0.2)\n")
    rc = real_run.run_measured([sys.executable, "-c", script], "repro", repo, tmp_path, env=None)
    records = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert rc == 0 and [(r["stage"], r["from_run_cache"]) for r in records] == [("prune", False), ("train@full", True)]
    assert records[0]["wall_s"] >= 0.4 and records[1]["wall_s"] >= 0.2
    assert records[0]["disk_peak_gib"] >= 0.02 and records[1]["disk_peak_gib"] >= 0.02  # the file the first wrote
    assert records[1]["run"] == {"tokens_per_second": 123.4} and "run" not in records[0]
    row = real_run.table(records).splitlines()[-1].split(" | ")
    assert row[1] == "train@full (run cache)" and row[6] == "123.4"
    assert "Running stage 'prune'" in (tmp_path / "worker.log").read_text()


def test_the_run_folder_copies_the_code_but_not_outputs_wheels_or_caches():
    names = ["bmw", "data", "models", "mirror", ".whl3", ".whlb1", ".whlu1", ".git", ".venv", "dvc.yaml"]
    assert real_run.not_copied(str(ROOT), names) == {"data", "models", ".whl3", ".whlb1", ".whlu1", ".git", ".venv"}
    assert real_run.not_copied(str(ROOT / "bmw"), ["models", "train", "__pycache__"]) == {"__pycache__"}
    assert real_run.not_copied(str(ROOT / ".dvc"), ["config", "cache", "tmp"]) == {"cache", "tmp"}
