"""Fault suite, params: every key of the schema given a wrong type, a value out of its range and a misspelt
name; semantic errors (layers beyond the model's depth, float16 on a CPU, an lm-eval task that does not exist,
epochs that train nothing) stop the stage before it loads a model, naming the key. Counts go to tests/faults.py.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import BaseModel
from safetensors.torch import save_file

from bmw.base.tiny import tiny_config
from bmw.io import write_jsonl
from bmw.models.base import load_base
from bmw.params import Params, ParamsError, VariantParams, parse_params
from tests.test_params import _merge
from tests.test_train import chat_rows

ROOT = Path(__file__).resolve().parents[1]
AREA = "params"
WRONG_TYPE = {"not": "a value of this key"}

# A value out of each key's range; None: the key has none (free text, a switch, a date).
OUT_OF_RANGE: dict[str, Any] = {
    "seed": -1,
    "scrape.source": "ftp://example.com", "scrape.until": None, "scrape.target": 0, "scrape.concurrency": 33,
    "scrape.delay_s": -1, "scrape.autothrottle": None, "scrape.timeout_s": 0, "scrape.retries": -1,
    "scrape.max_pdf_mb": 1e-9, "scrape.obey_robots": None, "scrape.user_agent": None,
    "clean.extraction": "ocr", "clean.max_removed_share": 1.5, "clean.min_chars": -1, "clean.languages": ["fr"],
    "clean.workers": 0,
    "filter.enabled": None, "filter.base_url": "localhost:8000", "filter.model": None,
    "filter.api_key_env": "$OPENAI_API_KEY", "filter.prompt_version": 0, "filter.chunk_chars": 10,
    "filter.concurrency": 0, "filter.max_retries": -1, "filter.timeout_s": 0, "filter.min_keep_ratio": 0,
    "filter.cache_dir": None, "filter.max_fallback_share": 1.5,
    "format.style": "chat", "format.system_prompt": None, "format.split.validation": 0, "format.split.test": 1,
    "format.qa_per_article": 0, "format.mcqa_per_article": 0,
    "format.mcqa_knowledge_per_article": -1, "format.mcqa_choices": 1, "format.eval_prompts": 0,
    "base.name": "random:qwen3-9b", "base.revision": None, "base.dtype": "float8", "base.compute": "float8",
    "model.type": "prunned", "model.dropped.layers": [], "model.dropped.count": 0, "model.pruned.keep": 0,
    "model.pruned.keep_last": None, "model.pruned.score": "random", "model.laco.C": 1, "model.laco.L": -1,
    "model.laco.H": 0, "model.laco.I": 0, "model.laco.T": 1.5, "model.laco.max_compression": 0.95,
    "model.laco.merge": "mean", "model.laco.scope": "norms", "model.laco.calibration_docs": 0,
    "model.replaceme.count": 0, "model.replaceme.start": 0, "model.replaceme.calibration_docs": 0,
    "model.replaceme.calibration_tokens": 8, "model.heal.method": "distill", "model.heal.steps": 0,
    "model.heal.lr": 0, "model.heal.rank": 0, "model.heal.calibration_docs": 0, "model.heal.calibration_tokens": 8,
    "model.calibration_tokens": 8,
    "variants.lora.method": "qlora", "variants.lora.type": "half", "variants.lora.epochs": 0, "variants.lora.lr": 0,
    "variants.lora.r": 0, "variants.lora.alpha": 0, "variants.lora.dropout": 1,
    "train.backend": "deepspeed", "train.max_length": 8, "train.batch_size": 0, "train.grad_accum": 0,
    "train.warmup_ratio": 1, "train.weight_decay": -0.1, "train.scheduler": "step", "train.assistant_only_loss": None,
    "train.mask_empty_think": None,
    "train.packing": None, "train.eval_steps": 0, "train.save_total_limit": 0, "train.early_stopping_patience": 0,
    "train.gradient_checkpointing": None, "train.fp8": None, "train.compile": None, "train.distributed": "zero3",
    "train.gpus": -1,
    "eval.window": 4, "eval.stride": 0, "eval.se_samples": 1, "eval.se_prompts": 0, "eval.se_clustering": "kmeans",
    "eval.se_threshold": 0, "eval.nli_model": None, "eval.max_new_tokens": 0, "eval.temperature": 0,
    "eval.top_p": 1.5, "eval.enable_thinking": [], "eval.batch_size": 0, "eval.generation_batch_size": 0,
    "eval.lm_eval_tasks": None,
    "eval.lm_eval_include": None,
}
# Cases the issue names: each must fail, naming the key
NAMED = [
    ({"format": {"split": {"validation": 0}}}, "format.split.validation"),
    ({"seed": 2**32}, "seed"),
    ({"model": {"dropped": {"layers": []}}}, "model.dropped.layers"),
    ({"model": {"laco": {"max_compression": 0.99}}}, "model.laco.max_compression"),
    ({"scrape": {"max_pdf_mb": 1e-7}}, "scrape.max_pdf_mb"),
    ({"filter": {"base_url": "not a url"}}, "filter.base_url"),
    ({"variants": {}}, "variants"),
    ({"train": {"compile": True, "distributed": "fsdp"}}, "train.distributed"),  # never run together
]


def schema_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        if name == "variants":
            keys += schema_keys(VariantParams, "variants.lora.")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += schema_keys(field.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _default() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _set(data: dict, key: str, value: Any) -> dict:
    patch: Any = value
    for part in reversed(key.split(".")):
        patch = {part: patch}
    out = _merge(data, patch)
    if key == "variants":
        out["variants"] = value
    return out


def _error(data: dict) -> str:
    try:
        parse_params(data)
    except ParamsError as e:
        return str(e)
    return ""


def test_every_key_has_a_row_in_the_range_table():
    assert sorted(schema_keys()) == sorted(OUT_OF_RANGE)


@pytest.mark.parametrize("key", schema_keys())
def test_every_key_given_a_wrong_type_a_value_out_of_range_and_a_misspelt_name(key, ledger):
    error = _error(_set(_default(), key, WRONG_TYPE))
    ledger.check(AREA, f"{key}: wrong type", f"\n  {key}" in error, detail=error)
    if OUT_OF_RANGE[key] is not None:
        error = _error(_set(_default(), key, OUT_OF_RANGE[key]))
        ledger.check(AREA, f"{key}: out of range ({OUT_OF_RANGE[key]!r})", f"\n  {key}" in error, detail=error)
    typo = f"{key}_typo"
    error = _error(_set(_default(), typo, 1))
    ledger.check(AREA, f"{key}: misspelt", f"\n  {typo}: unknown key" in error, detail=error)


@pytest.mark.parametrize("patch, key", NAMED)
def test_the_values_the_issue_names_are_refused_naming_the_key(patch, key, ledger):
    data = _default()
    for section, value in patch.items():
        data[section] = _merge(data[section], value) if isinstance(value, dict) and value else value
    error = _error(data)
    ledger.check(AREA, f"{key}: {patch}", f"\n  {key}" in error, detail=error)


# --- semantic errors: the stage stops before it loads a model -------------------------------------------------

LAYERS = 36


def _fake_base(folder: Path, layers: int = LAYERS, config: dict | None = None) -> Path:
    """A base folder whose config and weight headers are consistent, but whose weights no model could load:
    a stage that got as far as loading it would fail with another error than the one about its params."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(tiny_config(vocab_size=512).to_dict() | (config or {})))
    save_file({f"model.layers.{i}.input_layernorm.weight": torch.ones(1) for i in range(layers)},
              folder / "model.safetensors")
    return folder


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    _fake_base(tmp_path / "models" / "base")
    rng = random.Random(3)
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / "data" / "processed" / f"{split}.jsonl", chat_rows(16, rng))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _params(project: Path, patch: dict) -> None:
    data = _default()
    for section, value in patch.items():
        data[section] = _merge(data[section], value)
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _stage(name: str, *args: str) -> None:
    module = __import__(f"stages.{name}", fromlist=["main"])
    module.main(list(args)) if args else module.main()


SEMANTIC = [
    ("prune", (), {"model": {"type": "dropped", "dropped": {"layers": [3, 40]}}}, "model.dropped.layers: [40] out of range"),
    ("prune", (), {"model": {"type": "pruned", "pruned": {"keep": 40}}}, "model.pruned.keep: 40 exceeds"),
    ("prune", (), {"model": {"type": "laco", "laco": {"C": 37}}}, "model.laco.C"),
    ("prune", (), {"model": {"type": "laco", "laco": {"H": 40}}}, "model.laco.H: 40 exceeds"),
    ("prune", (), {"variants": {"dropped_lora": {"method": "lora", "type": "dropped"}},
                   "model": {"dropped": {"layers": [36]}}}, "model.dropped.layers: [36] out of range"),  # pinned type
    ("train", ("lora",), {"base": {"dtype": "float16"}}, "base.dtype: float16 needs a CUDA GPU"),
    ("train", ("lora",), {"variants": {"lora": {"epochs": 1e-9}}}, "variants.lora.epochs: 1e-09 epochs of 16"),
    ("eval", ("lora",), {"base": {"dtype": "float16"}}, "base.dtype: float16 needs a CUDA GPU"),
    pytest.param("eval", ("lora",), {"eval": {"lm_eval_tasks": ["bmw_local_mc", "no_such_task"],
                                              "lm_eval_include": str(ROOT / "tests" / "fixtures" / "lm_eval")}},
                 "eval.lm_eval_tasks: unknown lm-evaluation-harness task(s): no_such_task",
                 marks=pytest.mark.slow),  # the harness indexes its own tasks: some 15 s
]


@pytest.mark.parametrize("stage, args, patch, message", SEMANTIC)
def test_semantic_errors_stop_the_stage_before_any_model_loads(project, stage, args, patch, message, ledger):
    """The base folder's weights fit no model (one scalar per layer): had the stage loaded it, the error would be
    transformers' size mismatch, not the one naming the key."""
    _params(project, patch)
    with pytest.raises(ValueError) as err:  # ParamsError is a ValueError
        _stage(stage, *args)
    ledger.check(AREA, f"{stage}: {message.split(':')[0]} ({json.dumps(patch)[:60]})", message in str(err.value),
                 detail=err.value)


BAD_BASES = {
    "weights for 37 layers, config 36": ({"layers": 37}, "config.json says 36 layers, the weights hold 37"),
    "weights for 35 layers, config 36": ({"layers": 35}, "config.json says 36 layers, the weights hold 35; missing [35]"),
    "config asks for remote code": ({"config": {"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}},
                                    "maps classes to code shipped with the model"),
}


@pytest.mark.parametrize("case", BAD_BASES)
def test_base_folders_that_would_load_wrong_or_run_code_are_refused(tmp_path, case, ledger):
    options, message = BAD_BASES[case]
    base = _fake_base(tmp_path / "base", **options)
    with pytest.raises(ValueError) as err:
        load_base(base)
    ledger.check(AREA, f"base folder: {case}", message in str(err.value), detail=err.value)

