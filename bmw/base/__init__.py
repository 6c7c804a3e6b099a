"""The base stage: the base model + tokenizer into `models/base/`.

materialise (a local folder, a Hub id, or the embedded `tiny`), tiny (Qwen3 configs: Qwen3-8B's and the tiny
one), tokenizer (the tiny BPE with Qwen3's ChatML template, or a real model's tokenizer).
"""
