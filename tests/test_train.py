"""Training on the real tiny Qwen3 (shipped tokenizer, a 3-layer plan of the 36-layer base) with real optimizer steps."""

from __future__ import annotations

import csv
import filecmp
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn
from torch._dynamo.utils import counters

from bmw.base.materialise import materialise_base
from bmw.io import write_jsonl
from bmw.models.base import load_base
from bmw.models.identity import base_identity, identity_differences
from bmw.models.plan import plan_path, save_plan
from bmw.models.thinking import EMPTY_THINK
from bmw.models.surgery import apply_plan
from bmw.models.variant import load_variant, save_variant
from bmw.params import BaseModelParams, TrainParams, VariantParams, parse_params
from bmw.train.backend import resolve_backend
from bmw.train.checkpoints import resume_point
from bmw.train.config import (compiles_layers, cuda_fast_args, ensure_packing_safe, pad_multiple, run_config,
                              uses_fp8)
from bmw.train.data import load_chat_split
from bmw.train.sft import build_trainer, fit, validation_loss
from bmw.train.summary import steady_tokens_per_second
from bmw.train.variant import train_variant

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
PLAN = {"type": "pruned", "layers_before": 36, "layers_after": 3, "operations": [{"op": "keep", "layers": [0, 1, 35]}]}
PARAMS = {
    "seed": 42,
    "model": {"type": "pruned"},
    "variants": {
        "baseline": {"method": "none"},
        "full": {"method": "full", "epochs": 3, "lr": 5e-3},
        "lora": {"method": "lora", "epochs": 3, "lr": 2e-2, "r": 4, "alpha": 8},
    },
    "train": {"max_length": 96, "batch_size": 4, "eval_steps": 2, "warmup_ratio": 0.0, "save_total_limit": 2},
}
SUBJECTS = ["The BMW Group", "BMW", "MINI", "Rolls-Royce", "The plant in Munich", "The new BMW iX3"]
VERBS = ["presents", "delivers", "produces", "announces", "expands", "reports"]
OBJECTS = ["a new electric model", "record sales", "the Neue Klasse", "battery cells", "the quarterly results"]


def chat_rows(n: int, rng: random.Random) -> list[dict]:
    def doc() -> str:
        return " ".join(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(rng.randint(3, 6)))

    return [
        {"id": f"T{i:04d}", "style": "instruct", "messages": [
            {"role": "system", "content": "You are a writer for BMW Group Corporate Communications."},
            {"role": "user", "content": f"Write press release number {i}."},
            {"role": "assistant", "content": doc()},
        ]}
        for i in range(n)
    ]


def make_project(root: Path, params: dict = PARAMS) -> Path:
    """A project folder laid out as the pipeline leaves it before train: base, plans, processed data, params."""
    materialise_base(root / "models" / "base", BaseModelParams(), seed=42)
    for name in params["variants"]:
        save_plan(plan_path(name, root / "models" / "plans"), PLAN)
    rng = random.Random(7)
    write_jsonl(root / "data" / "processed" / "train.jsonl", chat_rows(16, rng))
    write_jsonl(root / "data" / "processed" / "validation.jsonl", chat_rows(4, rng))
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("project"))


def run_variant(project: Path, name: str, tag: str) -> tuple[dict, Path, Path]:
    out, metrics = project / "models" / "variants" / tag, project / "metrics" / "train" / tag
    result = train_variant(
        name, parse_params(PARAMS), out, metrics, project / "models" / "checkpoints" / tag,
        base_dir=project / "models" / "base", plans_dir=project / "models" / "plans",
        data_dir=project / "data" / "processed",
    )
    return result, out, metrics


@pytest.fixture(scope="module")
def trained(project):
    """train_variant results by variant name, each trained once for the module."""
    cache: dict[str, tuple[dict, Path, Path]] = {}

    def get(name: str) -> tuple[dict, Path, Path]:
        if name not in cache:
            cache[name] = run_variant(project, name, f"api_{name}")  # apart from the stage's own folders
        return cache[name]

    return get


def curve(path: Path) -> list[tuple[int, float]]:
    with path.open(encoding="utf-8") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f, delimiter="\t")]


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def sample_ids(tokenizer) -> torch.Tensor:
    return tokenizer("The BMW Group presents the new BMW iX3 in Munich.", return_tensors="pt").input_ids


METRIC_KEYS = {
    "trained", "method", "type", "layers", "total_params", "trainable_params", "train_time_s", "time_per_epoch_s",
    "epochs_run", "steps", "tokens_seen", "tokens_per_second", "steady_tokens_per_second", "best_eval_loss",
    "best_step", "final_train_loss", "backend",
}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_lowers_the_loss_and_saves_the_planned_architecture(trained, project, method):
    metrics, out, metrics_dir = trained(method)
    assert METRIC_KEYS <= set(metrics)
    assert json.loads((metrics_dir / "run.json").read_text()) == metrics
    # the DVC metric holds no wall-clock figure and no string
    assert json.loads((metrics_dir / "metrics.json").read_text()) == {"best_eval_loss": metrics["best_eval_loss"]}
    assert not (metrics_dir / "params.yaml").exists()
    assert metrics["trained"] and metrics["layers"] == 3 and metrics["type"] == "pruned"
    # every trainable tensor moved: 3 layers of 11 + embeddings, final norm, LM head; LoRA's A and B of 3 x 7 linears
    assert metrics["changed_tensors"] == {"full": 36, "lora": 42}[method]
    assert metrics["backend"] == "transformers" and metrics["steps"] == metrics["max_steps"] == 12
    assert metrics["epochs_run"] == 3 and metrics["tokens_seen"] > 0 and metrics["tokens_per_second"] > 0
    assert metrics["steady_tokens_per_second"] > 0

    train_curve = curve(metrics_dir / "plots" / "metrics" / "loss.tsv")
    assert [s for s, _ in train_curve] == list(range(1, 13))  # keyed by optimizer step, each once
    first, last = train_curve[0][1], train_curve[-1][1]
    assert last < first - 0.3, train_curve  # from about ln(vocab) of the random base
    eval_curve = curve(metrics_dir / "plots" / "metrics" / "eval" / "loss.tsv")
    assert [s for s, _ in eval_curve] == [2, 4, 6, 8, 10, 12]
    assert metrics["best_eval_loss"] == min(v for _, v in eval_curve) < eval_curve[0][1]
    assert metrics["final_train_loss"] == last

    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["format"] == ("lora" if method == "lora" else "full") and manifest["layers"] == 3
    assert json.loads((out / "plan.json").read_text()) == PLAN
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()
    if method == "full":
        assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 3
        assert metrics["trainable_params"] == metrics["total_params"]
    else:
        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    assert not (project / "models" / "checkpoints" / f"api_{method}").exists()  # removed once the variant is saved


def test_a_run_that_changes_no_weight_fails_and_writes_no_variant(project, monkeypatch):
    """Optimizer steps at a learning rate of 0 (the schema refuses lr 0: forced into the run's arguments, as a
    warm-up over a run's only step makes it) leave the weights as they were: the stage fails, saying what to change."""
    def at_lr_zero(*args, **kwargs):
        config = run_config(*args, **kwargs)
        config.args.learning_rate = 0.0
        return config

    monkeypatch.setattr("bmw.train.variant.run_config", at_lr_zero)
    # early stopping ends it after 3 evaluations without improvement, at step 8 of 12
    with pytest.raises(RuntimeError, match=r"variants.full: its 8 optimizer step\(s\) left every trainable weight as "
                                           r"it was, nothing was trained \(learning rate 0, the first 0 of 12 steps.*"
                                           r"Raise variants.full.epochs or variants.full.lr, or lower train.warmup_ratio"):
        run_variant(project, "full", "lr0")
    for folder in ("models/variants/lr0", "metrics/train/lr0", "models/checkpoints/lr0"):
        assert not (project / folder).exists(), folder


def test_lora_adapts_every_linear_layer_of_the_decoder(trained, project):
    metrics, out, _ = trained("lora")
    r = PARAMS["variants"]["lora"]["r"]
    model = apply_plan(load_base(project / "models" / "base")[0], PLAN)
    linears = [m for name, m in model.model.layers.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3 * len(LINEAR)
    assert metrics["trainable_params"] == sum(r * (m.in_features + m.out_features) for m in linears)
    assert metrics["total_params"] == sum(p.numel() for p in model.parameters())
    # sorted: written from a set, the order would follow the process's string hashing and the bytes would vary
    assert json.loads((out / "adapter_config.json").read_text())["target_modules"] == sorted(LINEAR)


def test_none_saves_the_untrained_planned_architecture(trained, project):
    metrics, out, _ = trained("baseline")
    assert metrics["trained"] is False and metrics["method"] == "none" and metrics["backend"] == "none"
    assert metrics["layers"] == 3 and metrics["trainable_params"] == 0 and metrics["steps"] == 0
    # no second copy of the base's weights: the variant is the base + its plan
    assert json.loads((out / "variant.json").read_text())["format"] == "base"
    assert not list(out.glob("*.safetensors")) and (out / "plan.json").is_file()
    model, tokenizer = load_variant(out)
    assert model.config.num_hidden_layers == 3 and len(model.model.layers) == 3
    reference = apply_plan(load_base(project / "models" / "base")[0], PLAN)
    ids = sample_ids(tokenizer)
    assert torch.equal(logits(model, ids), logits(reference, ids))


@pytest.mark.parametrize("name", ["baseline", "full", "lora"])
def test_a_variants_files_equal_to_the_bases_are_links_to_them(trained, project, name):
    """DVC keeps a second copy of bytes it has cached already: the tokenizer files every variant shares with the base
    are hard links to the base's (one inode), and nothing that differs is linked."""
    _, out, _ = trained(name)
    base = project / "models" / "base"
    shared = [f.name for f in out.iterdir() if (base / f.name).is_file() and filecmp.cmp(base / f.name, f, False)]
    assert "tokenizer.json" in shared
    assert all(os.path.samefile(base / n, out / n) for n in shared)
    assert not any(os.path.samefile(base / f.name, f) for f in out.iterdir() if f.name not in shared
                   and (base / f.name).is_file())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_saved_variant_reloads_to_identical_logits(project, tmp_path, method):
    base = project / "models" / "base"
    model, tokenizer = load_base(base)
    model = apply_plan(model, PLAN)
    params = parse_params(PARAMS)
    variant = params.variants[method].model_copy(update={"epochs": 0.5})
    trained_model, _, _ = fit(
        model, tokenizer, run_config(params.train, variant, 42, tmp_path / "ck", "float32"),
        load_chat_split(project / "data" / "processed" / "train.jsonl"),
        load_chat_split(project / "data" / "processed" / "validation.jsonl"),
        metrics_dir=tmp_path / "metrics", fingerprint="reload",
    )
    manifest = {"name": method, "method": method, "type": "pruned", "layers": 3,
                "base": {"path": str(base), "dtype": "float32"}}
    save_variant(tmp_path / "out", trained_model, tokenizer, manifest, PLAN)
    ids = sample_ids(tokenizer)
    expected = logits(trained_model.eval(), ids)
    reloaded, _ = load_variant(tmp_path / "out")
    assert torch.equal(logits(reloaded, ids), expected)
    merged, _ = load_variant(tmp_path / "out", merge=True)
    assert torch.allclose(logits(merged, ids), expected, atol=1e-5)
    gen = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    cached = merged.generate(ids, use_cache=True, **gen)
    assert torch.equal(cached, merged.generate(ids, use_cache=False, **gen))


def test_a_variant_refuses_another_base_or_plan_than_it_was_saved_with(trained, project, tmp_path, monkeypatch):
    """PEFT puts an adapter onto any model with modules of the adapted names and shapes: a base seeded otherwise
    (same config, same file sizes) or with another config would load without a word."""
    _, out, _ = trained("lora")
    base = project / "models" / "base"
    model, _ = load_variant(out, base_dir=base)
    assert model.config.num_hidden_layers == 3
    reseeded = materialise_base(tmp_path / "reseeded", BaseModelParams(), seed=43)
    reconfigured = tmp_path / "reconfigured"
    shutil.copytree(base, reconfigured)
    config = reconfigured / "config.json"
    config.write_text(config.read_text().replace('"max_position_embeddings": 2048', '"max_position_embeddings": 4096'))

    def refused(*args, **kwargs):
        raise AssertionError("a base was loaded for a variant that is refused")

    monkeypatch.setattr("bmw.models.variant.load_base", refused)  # refused before any weight is read
    with pytest.raises(ValueError, match=rf"{out} was built on the base at {base}, and the base at {reseeded} is "
                                         r"another: model.safetensors differs\. .*run train@lora again"):
        load_variant(out, base_dir=reseeded)
    with pytest.raises(ValueError, match=rf"the base at {reconfigured} is another: config.json differs\."):
        load_variant(out, base_dir=reconfigured)
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    save_plan(edited / "plan.json", {**PLAN, "operations": [{"op": "keep", "layers": [0, 1, 34]}]})
    with pytest.raises(ValueError, match=rf"{edited}/plan.json is not the plan the variant was saved with"):
        load_variant(edited, base_dir=base)


def test_a_base_identity_names_each_file_that_differs(tmp_path):
    # random bases: their weights are made at load from the marker's seed, which is all that tells them apart
    one, two = (materialise_base(tmp_path / f"seed{seed}", BaseModelParams(name="random:tiny"), seed=seed)
                for seed in (1, 2))
    assert identity_differences(base_identity(one), base_identity(one)) == []
    assert identity_differences(base_identity(one), base_identity(two)) == ["random_weights.json differs"]
    (two / "tokenizer.json").unlink()
    (two / "extra.txt").write_text("x")
    (two / "config.json").write_text((one / "config.json").read_text() + " ")
    assert identity_differences(base_identity(one), base_identity(two)) == [
        f"config.json is {(one / 'config.json').stat().st_size + 1} bytes, the recorded base's "
        f"{(one / 'config.json').stat().st_size}",
        "extra.txt not in the recorded base", "random_weights.json differs", "tokenizer.json missing"]


@pytest.fixture(scope="module")
def overfit(project, tmp_path_factory):
    """Full fine-tuning at a high constant learning rate, evaluated every step: validation loss soon rises."""
    ck = tmp_path_factory.mktemp("overfit") / "ck"
    params = parse_params(PARAMS)
    # with the empty think block masked this run's validation loss keeps falling for 40 steps: unmasked, it rises
    # after step 2 (the case these tests need)
    train = params.train.model_copy(update={"eval_steps": 1, "scheduler": "constant", "early_stopping_patience": 3,
                                            "mask_empty_think": False})
    model, tokenizer = load_base(project / "models" / "base")
    model, figures, _ = fit(
        apply_plan(model, PLAN), tokenizer,
        run_config(train, VariantParams(method="full", epochs=10, lr=1e-1), 42, ck, "float32"),
        load_chat_split(project / "data" / "processed" / "train.jsonl"),
        load_chat_split(project / "data" / "processed" / "validation.jsonl"),
        metrics_dir=ck.parent / "metrics", fingerprint="overfit",
    )
    return model, figures, ck, curve(ck.parent / "metrics" / "plots" / "metrics" / "eval" / "loss.tsv")


def test_the_best_checkpoint_by_eval_loss_is_the_one_kept(overfit):
    model, figures, ck, eval_curve = overfit
    best_step, best = min(eval_curve, key=lambda sv: sv[1])
    last_step, last = eval_curve[-1]
    assert last > best and last_step > best_step  # the case the earlier pipeline got wrong
    assert (figures["best_step"], figures["best_eval_loss"]) == (best_step, best)
    state = {k: v for k, v in model.state_dict().items()}
    best_weights = load_file(ck / f"checkpoint-{best_step}" / "model.safetensors")
    last_weights = load_file(ck / f"checkpoint-{last_step}" / "model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in best_weights.items())
    assert not all(torch.equal(state[k], v) for k, v in last_weights.items())
    # only the newest checkpoint keeps what a resume needs beyond the weights: older ones lose their optimizer state
    assert (ck / f"checkpoint-{last_step}" / "optimizer.pt").is_file()
    assert not (ck / f"checkpoint-{best_step}" / "optimizer.pt").exists()
    assert (ck / f"checkpoint-{best_step}" / "trainer_state.json").is_file()


def test_early_stopping_stops_after_patience_evaluations_without_improvement(overfit):
    _, figures, _, eval_curve = overfit
    assert figures["early_stopped"] and figures["steps"] < figures["max_steps"] == 40
    assert figures["steps"] == figures["best_step"] + 3  # patience 3, one evaluation per step
    assert [s for s, _ in eval_curve] == list(range(1, figures["steps"] + 1))


def test_assistant_only_loss_masks_all_but_the_assistant_turns(project, tmp_path):
    params = parse_params(PARAMS)
    model, tokenizer = load_base(project / "models" / "base")
    data = load_chat_split(project / "data" / "processed" / "validation.jsonl")

    def labelled(assistant_only: bool) -> list[tuple[list[int], list[int]]]:
        train = params.train.model_copy(update={"assistant_only_loss": assistant_only, "max_length": 512})
        config = run_config(train, params.variants["full"], 42, tmp_path, "float32")
        trainer = build_trainer(model, tokenizer, config, data, data)
        return [(row["input_ids"], row["labels"]) for row in trainer.train_dataset]

    for (ids, labels), row in zip(labelled(True), data):
        trained_on = [t for t, label in zip(ids, labels) if label != -100]
        assert tokenizer.decode(trained_on) == row["messages"][-1]["content"] + "<|im_end|>"
        assert "<|im_start|>" not in tokenizer.decode(trained_on)
    # the whole text but the empty think block (train.mask_empty_think, on by default)
    for (ids, labels), row in zip(labelled(False), data):
        trained_on = [t for t, label in zip(ids, labels) if label != -100]
        rendered = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert tokenizer.decode(trained_on) == rendered.replace(EMPTY_THINK, "")


def _trained_rows(model, tokenizer, data, tmp_path, **train) -> list[tuple[list[int], list[int]]]:
    params = parse_params(PARAMS)
    config = run_config(params.train.model_copy(update={"max_length": 512} | train), params.variants["full"], 42,
                        tmp_path, "float32")
    trainer = build_trainer(model, tokenizer, config, data, data)
    return [(row["input_ids"], row["labels"]) for row in trainer.train_dataset]


def _split(tokenizer, ids: list[int], labels: list[int]) -> tuple[str, str]:
    """(the text trained on, the text left out of the loss)"""
    return (tokenizer.decode([t for t, label in zip(ids, labels) if label != -100]),
            tokenizer.decode([t for t, label in zip(ids, labels) if label == -100]))


@pytest.mark.parametrize("packing", [False, True])
def test_the_empty_think_block_is_left_out_of_the_loss_of_the_whole_text(project, tmp_path, packing):
    """Qwen3's template writes `<think>\n\n</think>\n\n` before each answer: with mask_empty_think its tokens, and
    only they, carry no label, in packed rows too; off, every token is trained on."""
    model, tokenizer = load_base(project / "models" / "base")
    data = load_chat_split(project / "data" / "processed" / "validation.jsonl")
    rendered = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in data]
    assert all(text.count(EMPTY_THINK) == 1 for text in rendered)
    rows = _trained_rows(model, tokenizer, data, tmp_path, packing=packing)
    assert len(rows) == (1 if packing else len(data))
    for ids, labels in rows:
        trained, left_out = _split(tokenizer, ids, labels)
        assert left_out == EMPTY_THINK * (len(data) if packing else 1)
        assert EMPTY_THINK not in trained and "<think>" not in trained
    assert sorted("".join(_split(tokenizer, *row)[0] for row in rows)) == sorted(
        "".join(text.replace(EMPTY_THINK, "") for text in rendered))  # every other token, the answers', trained on
    assert all(ids == labels for ids, labels in _trained_rows(model, tokenizer, data, tmp_path, packing=packing,
                                                              mask_empty_think=False))


def test_a_template_without_thinking_has_nothing_masked(project, tmp_path, caplog):
    model, tokenizer = load_base(project / "models" / "base")
    tokenizer.chat_template = (ROOT / "bmw" / "base" / "smollm2_chatml.jinja").read_text(encoding="utf-8")
    data = load_chat_split(project / "data" / "processed" / "validation.jsonl")
    with caplog.at_level(logging.INFO, logger="bmw.train.sft"):
        rows = _trained_rows(model, tokenizer, data, tmp_path)
    assert "the chat template writes no think block; nothing to mask" in caplog.text
    assert all(ids == labels for ids, labels in rows)


def test_length_grouped_batches_come_in_an_order_set_by_the_seed_and_epoch_alone(project, tmp_path):
    """A resumed run must see the batches the killed run would have seen: the order may not depend on the global RNG
    (transformers' LengthGroupedSampler draws from it), and it changes from epoch to epoch."""
    params = parse_params(PARAMS)
    model, tokenizer = load_base(project / "models" / "base")
    data = load_chat_split(project / "data" / "processed" / "train.jsonl")
    config = run_config(params.train, params.variants["full"], 42, tmp_path, "float32")
    assert config.args.train_sampling_strategy == "group_by_length"  # packing is off in PARAMS
    trainer = build_trainer(model, tokenizer, config, data, data)

    def epoch_batches(epoch: int, rng_seed: int) -> list[list[int]]:
        loader = trainer.get_train_dataloader()
        loader.set_epoch(epoch)  # as Trainer does before each epoch
        torch.manual_seed(rng_seed)
        return [(batch["input_ids"].shape[1], *batch["input_ids"].sum(1).tolist()) for batch in loader]  # rows told apart by their sums

    first = epoch_batches(0, rng_seed=1)
    assert epoch_batches(0, rng_seed=2) == first
    assert epoch_batches(1, rng_seed=1) != first
    widths = [batch[0] for batch in first]
    assert widths[0] == max(widths)  # still grouped by length: the longest batch first


@pytest.mark.parametrize("method", ["full", "lora"])
def test_compiled_layers_train_as_eager_ones_on_one_batch_shape_and_one_graph(project, tmp_path, method):
    """train.compile: after real optimizer steps on packed batches of several lengths the losses are the eager
    layers' (float32, CPU inductor), every batch is padded to batch_size x max_length tokens, and one graph serves
    every layer and every batch (a recompile per layer or per length would cost minutes at Qwen3-8B's shape)."""
    params = parse_params(PARAMS)
    train = params.train.model_copy(update={"packing": True, "max_length": 128, "batch_size": 2, "eval_steps": 10**6})
    data = load_chat_split(project / "data" / "processed" / "train.jsonl")

    def run(compiled: bool) -> tuple[list[float], set[tuple[int, ...]], bool]:
        model, tokenizer = load_base(project / "models" / "base")
        model = apply_plan(model, PLAN)
        config = run_config(train.model_copy(update={"compile": compiled}), params.variants[method], 42,
                            tmp_path / f"ck{compiled}", "float32")
        config.args.max_steps, config.patience = 3, None
        torch.manual_seed(0)  # LoRA's initialisation
        trainer = build_trainer(model, tokenizer, config, data, data)
        shapes = set()
        trainer.model.register_forward_pre_hook(lambda m, a, kw: shapes.add(tuple(kw["input_ids"].shape)),
                                                with_kwargs=True)
        trainer.train()
        history = trainer.state.log_history
        return [e["loss"] for e in history if "loss" in e], shapes, any("eval_loss" in e for e in history)

    eager, eager_shapes, _ = run(False)
    torch._dynamo.reset()
    counters.clear()
    compiled, compiled_shapes, evaluated = run(True)
    assert len(eager_shapes) > 1  # packing alone: batches of several lengths
    assert compiled_shapes == {(1, 2 * 128)}
    # the training steps' graph (LoRA: two, the first layer's input is the frozen embeddings', needing no gradient;
    # the others' inputs need one), and the evaluation's (no gradients) where the run evaluated (at its end)
    assert counters["stats"]["unique_graphs"] == 1 + (method == "lora") + evaluated
    assert compiled == pytest.approx(eager, rel=1e-4)


@pytest.mark.parametrize("variant, fp8, graphs", [
    ("full", False, 2),  # the training steps' graph and the evaluation's
    ("lora", True, 3),  # and the first layer's, whose input (the frozen embeddings') needs no gradient
])
def test_the_stage_trains_evaluates_and_saves_compiled_layers(project, tmp_path, variant, fp8, graphs):
    """train.compile through the stage's own code, as `auto` runs it on a GPU (here inductor on the CPU), LoRA with
    FP8 linears inside the layers as `train.fp8: auto` adds them there: evaluation between steps, checkpoints, the
    best one reloaded into the compiled model, the variant saved. The variant holds the model's own parameter names
    (no compiled wrapper's, no FP8 casts) and reloads; no step compiles a graph of its own."""
    data = {**PARAMS, "train": {**PARAMS["train"], "compile": True, "packing": True, "fp8": fp8}}
    torch._dynamo.reset()
    counters.clear()
    out, metrics_dir = tmp_path / "variant", tmp_path / "metrics"
    metrics = train_variant(variant, parse_params(data), out, metrics_dir, tmp_path / "ck",
                            base_dir=project / "models" / "base", plans_dir=project / "models" / "plans",
                            data_dir=project / "data" / "processed")
    assert metrics["trained"] and metrics["changed_tensors"] == {"full": 36, "lora": 42}[variant]
    assert metrics["steps"] >= 3
    eval_curve = curve(metrics_dir / "plots" / "metrics" / "eval" / "loss.tsv")
    assert len(eval_curve) >= 2 and metrics["best_eval_loss"] == min(v for _, v in eval_curve)
    assert counters["stats"]["unique_graphs"] <= graphs
    reloaded, tokenizer = load_variant(out)
    base, _ = load_base(project / "models" / "base")
    planned = apply_plan(base, PLAN)
    names = set(reloaded.state_dict())
    assert not any("_orig_mod" in name or "fp8" in name for name in names)
    if variant == "full":  # LoRA's variant is its adapter, named over the base
        assert names == set(planned.state_dict())
    ids = sample_ids(tokenizer)
    assert not torch.allclose(logits(reloaded, ids), logits(planned, ids))


@pytest.mark.parametrize("settings, multiple", [
    ({}, None), ({"packing": True}, None), ({"compile": True}, None),  # unpacked: a length per batch, dynamic
    ({"compile": True, "packing": True}, 2 * 4096), ({"fp8": True}, 16),
    ({"compile": True, "packing": True, "fp8": True, "max_length": 1004}, 2008 * 2),  # lcm(2 x 1004, 16)
])
def test_batches_are_padded_to_what_fp8_and_compiled_packing_need(settings, multiple):
    train = TrainParams(**{"batch_size": 2, "max_length": 4096, "fp8": False} | settings)
    assert pad_multiple(train, train.fp8) == multiple


@pytest.mark.parametrize("settings, compiled", [
    ({"packing": True}, True), ({}, False),  # unpacked: a length per batch, never measured compiled
    ({"packing": True, "gradient_checkpointing": True}, False), ({"packing": True, "backend": "transformers"}, False),
    ({"packing": True, "distributed": "ddp"}, False), ({"packing": True, "compile": False}, False),
    ({"compile": True}, True), ({"compile": True, "gradient_checkpointing": True}, True),
])
def test_compile_auto_compiles_the_layers_only_where_they_were_measured_faster(monkeypatch, settings, compiled):
    assert not compiles_layers(TrainParams(packing=True))  # this host: no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU host
    monkeypatch.setattr("bmw.train.config.liger_runs", lambda: True)
    train = TrainParams(**settings)
    assert compiles_layers(train) == compiled
    # inductor fuses what Liger's kernels would: they are on only for eager layers
    assert cuda_fast_args(train) == ({} if train.backend != "auto" else {"use_liger_kernel": not compiled})


@pytest.mark.parametrize("settings, method, capability, fp8", [
    ({"packing": True}, "lora", (9, 0), True), ({"packing": True}, "full", (9, 0), False),  # full: not measured
    ({"packing": True}, "lora", (8, 0), False),  # an A100: no FP8 matmuls
    ({}, "lora", (9, 0), False),  # unpacked: the layers stay eager, where FP8 was not faster
    ({"packing": True, "fp8": False}, "lora", (9, 0), False), ({"fp8": True}, "full", (8, 0), True),
])
def test_fp8_auto_trains_lora_in_fp8_only_where_it_was_measured_faster(monkeypatch, settings, method, capability,
                                                                        fp8):
    train, variant = TrainParams(**settings), VariantParams(method=method)
    assert uses_fp8(train, variant) == (train.fp8 is True)  # this host: no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU host
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *device: capability)
    assert uses_fp8(train, variant) == fp8
    assert not fp8 or pad_multiple(train, fp8) % 16 == 0  # CUDA's FP8 GEMM: every dimension a multiple of 16


def test_packing_keeps_sdpa_and_refuses_an_attention_that_mixes_examples(project):
    # SDPA gets a per-document mask from the padding-free batch's position_ids (tests/test_bench.py checks the loss)
    model, _ = load_base(project / "models" / "base")
    ensure_packing_safe(model)
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "paged|sdpa"  # one without that mask, where no flash-attn is installed
    with pytest.raises(ValueError, match="train.packing: true needs a varlen attention.*'paged\\|sdpa'"):
        ensure_packing_safe(model)


def test_unsloth_trains_only_where_asked_for_and_able_to(monkeypatch):
    """auto is the measured path, also where Unsloth would import; Unsloth refuses what it cannot train."""
    with pytest.raises(RuntimeError, match="train.backend: unsloth needs a CUDA GPU.*constraints-unsloth.txt"):
        resolve_backend("unsloth")
    monkeypatch.setattr("bmw.train.backend.unsloth_available", lambda: True)  # as on a GPU host with the extra
    assert resolve_backend("auto") == resolve_backend("transformers") == "transformers"
    assert resolve_backend("unsloth") == "unsloth"
    with pytest.raises(ValueError, match="train.backend: unknown backend 'fast'"):
        resolve_backend("fast")


def test_packed_batches_random_bases_and_compiled_layers_never_train_on_unsloth(monkeypatch):
    """ensure_packing_safe vouches for the model's attention implementation; Unsloth runs kernels of its own, which
    train.compile has never compiled, and its loader reads weights a random base does not have."""
    monkeypatch.setattr("bmw.train.backend.unsloth_available", lambda: True)
    assert resolve_backend("auto", weights_on_disk=False, packing=True, compile=True) == "transformers"
    with pytest.raises(RuntimeError, match="train.compile: true with train.backend: unsloth: .*train.compile: false"):
        resolve_backend("unsloth", compile=True)
    with pytest.raises(RuntimeError, match="train.packing: true with train.backend: unsloth: .*train.packing: false"):
        resolve_backend("unsloth", packing=True)
    with pytest.raises(RuntimeError, match="a random base .* has none there"):
        resolve_backend("unsloth", weights_on_disk=False)


def test_the_steady_rate_leaves_out_the_first_step_and_what_follows_the_last():
    from transformers import TrainerState

    def step(n: int, seconds: float, tokens: int) -> dict:
        return {"loss": 1.0, "step": n, "train_runtime": seconds, "num_input_tokens_seen": tokens}

    # a first step of 73 s (compilation), then 5 s per 60,000 tokens, an evaluation log between
    state = TrainerState(log_history=[step(1, 73.0, 60_000), step(2, 78.0, 120_000), {"eval_loss": 2.0, "step": 2},
                                      step(3, 83.0, 180_000)])
    assert steady_tokens_per_second(state) == 12_000.0
    # resumed from a checkpoint of step 1 (its history ends there): this session's steps only, its runtime from 0
    resumed = TrainerState(log_history=[step(1, 73.0, 60_000), step(2, 20.0, 120_000), step(3, 25.0, 180_000)])
    assert steady_tokens_per_second(resumed, start_step=1) == 12_000.0
    assert steady_tokens_per_second(resumed, start_step=2) is None  # one step is no rate


def test_malformed_training_data_fails_naming_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    good = chat_rows(1, random.Random(0))[0]
    bad = {"id": "x", "messages": [{"role": "user", "content": "only a question"}]}
    write_jsonl(path, [good, bad])
    with pytest.raises(ValueError, match=r"train.jsonl:2: no assistant message"):
        load_chat_split(path)
    path.write_text('{"messages": [{"role": "robot", "content": "x"}]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.jsonl:1: messages\[0\] must be"):
        load_chat_split(path)
    with pytest.raises(FileNotFoundError, match="run the format stage"):
        load_chat_split(tmp_path / "missing.jsonl")


def test_checkpoints_of_another_run_or_cut_off_saves_are_not_resumed(tmp_path):
    ck = tmp_path / "ck"
    assert resume_point(ck, "run-a") is None
    for step, complete in ((2, True), (4, True), (6, False)):
        (ck / f"checkpoint-{step}").mkdir()
        save_file({"w": torch.zeros(2)}, ck / f"checkpoint-{step}" / "model.safetensors")
        if complete:
            (ck / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resume_point(ck, "run-a") == ck / "checkpoint-4"
    assert not (ck / "checkpoint-6").exists()
    assert resume_point(ck, "run-b") is None
    assert not (ck / "checkpoint-4").exists()


def complete_checkpoints(ck: Path) -> list[int]:
    if not ck.exists():
        return []
    return sorted(int(p.name.split("-")[1]) for p in ck.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_last_checkpoint(project, trained):
    """SIGKILL `python -m stages.train lora` after its first checkpoint; the re-run continues, not restarts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "stages.train", "lora"]
    ck = project / "models" / "checkpoints" / "lora"
    proc = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not complete_checkpoints(ck) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    stderr = proc.communicate()[1].decode()
    assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    done = complete_checkpoints(ck)
    assert done and done[-1] < 12, done
    resumed_at = done[-1]

    rerun = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"starting at step {resumed_at}" in rerun.stderr
    metrics_dir = project / "metrics" / "train" / "lora"
    metrics = json.loads((metrics_dir / "run.json").read_text())
    assert metrics["resumed_from_step"] == resumed_at and metrics["steps"] == 12
    resumed_curve = curve(metrics_dir / "plots" / "metrics" / "loss.tsv")
    assert [s for s, _ in resumed_curve] == list(range(1, 13))  # no step twice, none missing
    # the same run uninterrupted (same params, data, seed): the resumed one continues it exactly
    _, _, uninterrupted_dir = trained("lora")
    expected = curve(uninterrupted_dir / "plots" / "metrics" / "loss.tsv")
    assert [v for _, v in resumed_curve] == pytest.approx([v for _, v in expected], abs=1e-5)
    assert not ck.exists()


def test_the_embedded_pretrained_base_trains_through_the_stage_code(smollm2_dir, tmp_path):
    """The real model path in CI: SmolLM2 (Llama, tied embeddings, its own template with generation markers) trains
    a LoRA adapter on assistant tokens only, and the saved variant reloads to the trained model's logits."""
    root = tmp_path / "project"
    (root / "models").mkdir(parents=True)
    (root / "models" / "base").symlink_to(smollm2_dir)
    plan = {"type": "original", "layers_before": 30, "layers_after": 30, "operations": []}
    save_plan(plan_path("lora", root / "models" / "plans"), plan)
    rng = random.Random(3)
    write_jsonl(root / "data" / "processed" / "train.jsonl", chat_rows(8, rng))
    write_jsonl(root / "data" / "processed" / "validation.jsonl", chat_rows(2, rng))
    params = parse_params({
        "variants": {"lora": {"method": "lora", "epochs": 1, "lr": 1e-3, "r": 4, "alpha": 8}},
        "train": {"max_length": 96, "batch_size": 4, "eval_steps": 1, "warmup_ratio": 0.0,
                  "assistant_only_loss": True},
    })
    out = root / "models" / "variants" / "lora"
    run = train_variant("lora", params, out, root / "metrics", root / "ck", base_dir=root / "models" / "base",
                        plans_dir=root / "models" / "plans", data_dir=root / "data" / "processed")
    assert run["trained"] and run["steps"] == 2 and run["layers"] == 30 and run["backend"] == "transformers"
    eval_curve = curve(root / "metrics" / "plots" / "metrics" / "eval" / "loss.tsv")
    assert eval_curve[-1][1] < eval_curve[0][1] < 5.0  # a pretrained model: far below ln(49152) = 10.8 from the start
    model, tokenizer = load_variant(out, merge=True)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert tokenizer.chat_template == (smollm2_dir / "chat_template.jinja").read_text()


def test_the_untrained_validation_loss_gets_the_kernels_training_gets(project, tmp_path, monkeypatch):
    """Trainer.train patches the model with Liger's kernels (use_liger_kernel: set on a CUDA GPU), Trainer.evaluate
    alone does not: the baseline's validation loss must be computed with them too, or it differs from a trained
    variant's with the same weights. Liger's kernels need a GPU: here the patching is recorded, not run."""
    patched = []
    monkeypatch.setattr("bmw.train.sft.apply_liger_kernel", lambda model, config: patched.append((model, config)))
    params = parse_params(PARAMS)
    config = run_config(params.train, params.variants["baseline"], 42, tmp_path / "ck", "float32")
    model, tokenizer = load_base(project / "models" / "base")
    model = apply_plan(model, PLAN)
    data = load_chat_split(project / "data" / "processed" / "validation.jsonl")
    plain = validation_loss(model, tokenizer, config, data, tmp_path / "plain")
    assert patched == []  # no GPU, no kernels: as in training
    config.args.use_liger_kernel = True
    config.args.liger_kernel_config = {"fused_linear_cross_entropy": False}
    assert validation_loss(model, tokenizer, config, data, tmp_path / "liger") == plain
    assert [(m, c) for m, c in patched] == [(model, {"fused_linear_cross_entropy": False})]
