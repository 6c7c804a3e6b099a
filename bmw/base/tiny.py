"""Qwen3 configurations: Qwen3-8B's exact one, and a tiny random one with Qwen3-8B's depth and layout.

The tiny model keeps the 36 layers, GQA 2:1, head_dim = hidden / heads, untied embeddings and rope theta of
Qwen3-8B, so layer indices (16, 24, ...) and plans mean the same thing; only the width is small.
`Qwen3Config()` defaults are not Qwen3-8B's, so every field is set explicitly.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

QWEN3_LAYERS = 36


def _qwen3_config(**fields) -> Qwen3Config:
    layers = fields["num_hidden_layers"]
    return Qwen3Config(
        hidden_act="silu",
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=layers,
        layer_types=["full_attention"] * layers,
        **fields,
    )


def qwen3_8b_config() -> Qwen3Config:
    """Qwen/Qwen3-8B's architecture (for sizing and GPU benchmarks; no weights)."""
    return _qwen3_config(
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=QWEN3_LAYERS,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=None,
        dtype="bfloat16",
    )


def tiny_config(vocab_size: int, special_ids: dict[str, int] | None = None) -> Qwen3Config:
    """Qwen3-8B's depth and layout at width 64. `special_ids` (bos/eos/pad token ids) come from the tokenizer."""
    ids = special_ids or {}
    return _qwen3_config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=QWEN3_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        bos_token_id=ids.get("bos"),
        eos_token_id=ids.get("eos"),
        pad_token_id=ids.get("pad"),
        dtype="float32",
    )


def build_tiny_model(seed: int, tokenizer=None) -> Qwen3ForCausalLM:
    """A random-initialised tiny Qwen3 sized for `tokenizer` (default: the shipped one); same seed, same weights."""
    if tokenizer is None:
        from bmw.base.tokenizer import load_tiny_tokenizer

        tokenizer = load_tiny_tokenizer()
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = tiny_config(
        len(tokenizer), {"bos": endoftext, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    # Qwen3's chat models stop at <|im_end|> or <|endoftext|>; sampling settings are left to the caller
    model.generation_config = GenerationConfig(
        bos_token_id=endoftext, eos_token_id=[tokenizer.eos_token_id, endoftext], pad_token_id=tokenizer.pad_token_id
    )
    return model.eval()
