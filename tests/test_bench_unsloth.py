"""`bmw bench model`'s Unsloth peer on a CPU: its runs are child processes started for real, whose failures come back
as the exact exception (Unsloth imports only on a GPU here), whose rows merge into the bench's JSON and table, and
whose own code (the folder, the loader call, the adapter, the trainer) runs end to end with a stand-in for Unsloth."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace

import pytest

from bench.model.cli import main, parse_args, plan_runs, table
from bench.model.train import RunSpec
from bench.model.unsloth_peer import last_exception, run_unsloth

SPEC = RunSpec(mode="unsloth", method="lora", seq=64, batch=2, steps=1, warmup=1)
# What the child's `import unsloth` raises on this CPU host: the package is not in the project's venv; in Unsloth's
# own (constraints-unsloth.txt) its import finds no GPU (the child turns Unsloth's CPU fallback off)
NO_UNSLOTH = ("NotImplementedError: Unsloth cannot find any torch accelerator? You need a GPU."
              if importlib.util.find_spec("unsloth") else "ModuleNotFoundError: No module named 'unsloth'")

# A stand-in for Unsloth with its loader's and adapter's signatures, done by transformers and PEFT; it writes down
# how it was called
STAND_IN = '''
import json, os
import peft, transformers

DEVICE_TYPE = "cpu"


def record(call, **kwargs):
    with open(os.environ["STAND_IN_CALLS"], "a") as f:
        f.write(json.dumps({"call": call, **{k: str(v) for k, v in kwargs.items()}}) + "\\n")


class FastLanguageModel:
    @staticmethod
    def from_pretrained(model_name, max_seq_length, dtype, load_in_4bit, full_finetuning, use_gradient_checkpointing):
        record("from_pretrained", files=sorted(os.listdir(model_name)), max_seq_length=max_seq_length,
               full_finetuning=full_finetuning, use_gradient_checkpointing=use_gradient_checkpointing)
        return (transformers.AutoModelForCausalLM.from_pretrained(model_name, dtype=dtype),
                transformers.AutoTokenizer.from_pretrained(model_name))

    @staticmethod
    def get_peft_model(model, r, lora_alpha, lora_dropout, target_modules, use_gradient_checkpointing,
                       random_state):
        record("get_peft_model", r=r, target_modules=target_modules,
               use_gradient_checkpointing=use_gradient_checkpointing)
        return peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                          target_modules=target_modules))
'''


def _site(tmp_path, code: str):
    (tmp_path / "site" / "unsloth").mkdir(parents=True)
    (tmp_path / "site" / "unsloth" / "__init__.py").write_text(code)
    return str(tmp_path / "site")


def test_the_bench_records_the_childs_exact_error_and_keeps_the_other_rows(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["--shape", "tiny", "--methods", "lora", "--baselines", "tuned,unsloth", "--seq", "64", "--batch", "2",
          "--steps", "1", "--warmup", "1", "--no-eval", "--unsloth-site", str(tmp_path / "empty"),
          "--out", str(out)])
    runs = {r["run"]: r for r in json.loads(out.read_text())["train"]}
    assert list(runs) == ["project/lora/original/auto", "tuned/lora/original", "unsloth/lora/original"]
    assert runs["tuned/lora/original"]["tokens"] > 0 and runs["project/lora/original/auto"]["tokens"] > 0
    failed = runs["unsloth/lora/original"]
    assert failed["error"] == NO_UNSLOTH and failed["mode"] == "unsloth" and failed["seq"] == 64
    assert "Traceback (most recent call last):" in failed["output_tail"] and "import unsloth" in failed["output_tail"]
    assert f"{'unsloth/lora/original':<40} {NO_UNSLOTH[:60]}" in capsys.readouterr().out


@pytest.mark.parametrize("code, error", [
    ("try:\n    import xformers_missing_kernel\nexcept ImportError as e:\n"
     "    raise RuntimeError('Unsloth: xformers has no kernel for sm_90\\nsecond line') from e\n",
     "RuntimeError: Unsloth: xformers has no kernel for sm_90"),
    ("import os, signal\nprint('loading', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n",
     "killed by SIGKILL, no traceback"),
    ("import time\ntime.sleep(60)\n", "TimeoutExpired: killed after 3 s (--budget-s)"),
], ids=["chained-exception", "killed", "timeout"])
def test_a_failed_child_says_why(tmp_path, code, error):
    """Its site comes first on the path (it shadows whatever else has `unsloth`); the last exception of a chain;
    a child killed by a signal; one that outruns the budget."""
    row = run_unsloth(SPEC, sys.executable, _site(tmp_path, code), timeout=3)
    assert row["error"] == error and row["run"] == "unsloth/lora/original"


def test_last_exception_is_the_line_that_names_it():
    output = ("noise\nTraceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    f()\n"
              "ValueError: first\n\nDuring handling of the above exception, another exception occurred:\n\n"
              "Traceback (most recent call last):\n  File \"b.py\", line 2, in <module>\n    g()\n"
              "    ^^^\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\nlater noise\n")
    assert last_exception(output) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert last_exception("no traceback here\n") is None


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_childs_run_end_to_end_with_a_stand_in_for_unsloth(tmp_path, monkeypatch, method):
    """The random model written to a folder with its tokenizer, loaded by FastLanguageModel with no checkpointing,
    the params' adapter on every linear for LoRA, trained and timed like the other runs; its row comes back."""
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("STAND_IN_CALLS", str(calls))
    row = run_unsloth(replace(SPEC, method=method), sys.executable, _site(tmp_path, STAND_IN), timeout=300)
    assert "error" not in row, row.get("output_tail")
    assert row["run"] == f"unsloth/{method}/original" and row["tokens"] > 0 and row["tokens_per_s"] > 0
    assert row["packing"] and not row["activation_checkpointing"] and not row["liger"]
    assert row["unsloth_device"] == "cpu" and "unsloth" in row["environment"]["versions"]
    assert (row["trainable_params"] < row["matmul_params"]) == (method == "lora")
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    load = recorded[0]
    assert load["call"] == "from_pretrained" and "model.safetensors" in load["files"]
    assert "tokenizer.json" in load["files"]
    assert load["full_finetuning"] == str(method == "full") and load["use_gradient_checkpointing"] == "False"
    if method == "lora":
        adapter = recorded[1]
        assert adapter["r"] == "16" and adapter["use_gradient_checkpointing"] == "False"
        assert adapter["target_modules"] == str(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                                 "v_proj"])
    else:
        assert len(recorded) == 1


def test_unsloth_runs_come_last_and_only_when_asked_for(tmp_path, monkeypatch, capsys):
    runs = plan_runs(parse_args(["--methods", "lora,full", "--baselines", "defaults,tuned,unsloth"]))
    assert [r.name for r in runs][-2:] == ["unsloth/lora/original", "unsloth/full/original"]
    assert runs[-1].batch == 1 and runs[-2].batch == 2  # --full-batch, --batch, as for the other peers
    assert not [r for r in plan_runs(parse_args(["--methods", "lora"])) if r.mode == "unsloth"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        parse_args(["--baselines", "unsloth"])
    assert "not under accelerate launch" in capsys.readouterr().err


def test_the_table_takes_unsloth_as_a_peer():
    rows = [("defaults", "lora", 100.0), ("tuned", "lora", 250.0), ("unsloth", "lora", 400.0),
            ("project", "lora", 500.0), ("defaults", "full", 200.0), ("project", "full", 300.0)]
    results = {"train": [{"run": f"{mode}/{method}", "mode": mode, "method": method, "tokens_per_s": rate,
                          "mfu": 0.1} for mode, method, rate in rows]
               + [{"run": "unsloth/full", "mode": "unsloth", "method": "full", "error": NO_UNSLOTH}]}
    lines = {line.split()[0]: line.split()[1:] for line in table(results).splitlines()[1:]}
    assert lines["project/lora"][-2:] == ["5.00", "1.25"]  # x TRL defaults, x best peer (Unsloth)
    assert lines["unsloth/lora"][-2:] == ["4.00", "1.00"]
    assert lines["project/full"][-2:] == ["1.50", "1.50"]  # the failed Unsloth run is no peer
    assert " ".join(lines["unsloth/full"]) == NO_UNSLOTH[:60].strip()
