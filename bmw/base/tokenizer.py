"""The tokenizer of a base model: the shipped tiny one (trained on the bundled press corpus) or a real model's.

The tiny tokenizer in `bmw/base/tiny_tokenizer/` is committed (the tiny base never depends on scraped data);
`bmw mirror tokenizer` retrains it on the bundled mirror's corpus with `build_tokenizer`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from bmw.params import BaseModelParams

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TINY_TOKENIZER_DIR = HERE / "tiny_tokenizer"
CHAT_TEMPLATE = (HERE / "qwen3_chatml.jinja").read_text(encoding="utf-8")
VOCAB_SIZE = 4096
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
THINK_TOKENS = ["<think>", "</think>"]  # single tokens but not special, as in Qwen3: decoding keeps them
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "vocab.json", "merges.txt"]


def build_tokenizer(texts: Sequence[str], vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerBase:
    """A byte-level BPE with Qwen2/3's normaliser and pre-tokeniser, Qwen3's special tokens and ChatML template.

    `vocab_size` is a cap: a small corpus saturates below it (every word one token) and the vocabulary stops there.
    """
    if not any(t.strip() for t in texts):
        raise ValueError("tokenizer corpus is empty")
    seed = Qwen2Tokenizer()  # empty vocab; carries the NFC + split regex + byte-level pipeline to train
    trained = seed.train_new_from_iterator(
        texts, vocab_size=vocab_size - len(THINK_TOKENS), new_special_tokens=SPECIAL_TOKENS[1:], show_progress=False
    )
    trained.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    trained.eos_token = IM_END
    trained.pad_token = ENDOFTEXT
    trained.unk_token = None
    trained.model_max_length = 2048
    trained.chat_template = CHAT_TEMPLATE
    return trained


def load_tiny_tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR, local_files_only=True)


def load_tokenizer(base: BaseModelParams) -> PreTrainedTokenizerBase:
    """The tokenizer of `base.name`: "tiny" (shipped), a local model folder, or a Hub id at `base.revision`."""
    if base.name == "tiny":
        return load_tiny_tokenizer()
    if Path(base.name).is_dir():
        return AutoTokenizer.from_pretrained(base.name, local_files_only=True, trust_remote_code=False)
    from huggingface_hub import snapshot_download

    path = snapshot_download(base.name, revision=base.revision, allow_patterns=TOKENIZER_FILES)
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
