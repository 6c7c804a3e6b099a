"""Tokenizer and chat template, tiny/Qwen3-8B configs, base materialisation (real tiny Qwen3, CPU)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from transformers import Qwen3ForCausalLM

from bmw.base.materialise import materialise_base
from bmw.base.tiny import build_tiny_model, qwen3_8b_config, tiny_config
from bmw.base.tokenizer import (
    CHAT_TEMPLATE,
    TINY_TOKENIZER_DIR,
    build_tokenizer,
    load_tiny_tokenizer,
)
from bmw.models.base import load_base
from bmw.params import BaseModelParams
from mirror.tokenizer import corpus_texts

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
