"""Qwen3's thinking as a chat template renders it: the empty think block and the enable_thinking switch.

Qwen3's template writes an empty think block before every non-thinking answer; training on it teaches the model
that answers start without thinking and erodes its thinking mode, so the loss leaves it out (as NeMo AutoModel,
ms-swift and ArcticTraining do). A template without thinking (SmolLM2) writes none and has no switch.
"""

from __future__ import annotations

from collections.abc import Sequence

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n\n"  # what Qwen3's template writes before a non-thinking answer
PROBE = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "."}]
IGNORE_INDEX = -100  # the label of a token left out of the loss


def mode_name(thinking: bool) -> str:
    return "thinking" if thinking else "non_thinking"


MODES = (mode_name(True), mode_name(False))  # what a mode's metric keys, table columns and per-item rows carry


def has_thinking_switch(tokenizer) -> bool:
    """Whether enable_thinking changes the generation prompt the chat template renders."""
    def prompt(thinking: bool) -> str:
        return tokenizer.apply_chat_template(PROBE[:1], tokenize=False, add_generation_prompt=True,
                                             enable_thinking=thinking)

    return prompt(True) != prompt(False)


def empty_think_ids(tokenizer) -> list[int] | None:
    """The token ids of the empty think block as the chat template writes it in an assistant turn; None where the
    template writes none."""
    if EMPTY_THINK not in tokenizer.apply_chat_template(PROBE, tokenize=False):
        return None
    pattern = tokenizer.encode(EMPTY_THINK, add_special_tokens=False)
    rendered = tokenizer.apply_chat_template(PROBE, tokenize=True, return_dict=True)["input_ids"]
    # the block tokenised alone must be the block in context, else the mask would silently find nothing
    if not empty_think_positions(rendered, pattern):
        raise ValueError(f"the tokenizer splits {EMPTY_THINK!r} differently inside a rendered conversation: "
                         "its tokens cannot be found to mask them (set train.mask_empty_think: false)")
    return pattern


def empty_think_positions(ids: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """Positions of `ids` covered by an occurrence of `pattern` (the empty think block's ids), in order."""
    pattern, k = list(pattern), len(pattern)
    starts = [i for i, token in enumerate(ids) if token == pattern[0] and list(ids[i:i + k]) == pattern]
    return [pos for start in starts for pos in range(start, start + k)]


def mask_empty_think(ids: Sequence[int], labels: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """`labels` with every token of each empty think block in `ids` left out of the loss."""
    masked = list(labels)
    for pos in empty_think_positions(ids, pattern):
        masked[pos] = IGNORE_INDEX
    return masked
