"""Batched generation for held-out prompts: left-padded batches decoded by the project's own loop (bmw.eval.decode)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm import tqdm

from bmw.eval.decode import decode
from bmw.models.thinking import THINK_CLOSE, THINK_OPEN, has_thinking_switch
from bmw.params import EvalParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]  # the new tokens, up to and including the first end-of-turn token
    text: str  # their decoding, special tokens kept
    thinking: str
    answer: str
    logprob: float  # sum of the model's (untempered) log-probabilities of token_ids
    finished: bool  # an end-of-turn token was generated within max_new_tokens


def split_thinking(text: str) -> tuple[str, str]:
    """Split Qwen3 output into (thinking, answer).

    `<think>a</think>b` -> ("a", "b"); text written before the block is answer too: `x <think>a</think>b` ->
    ("a", "x b"); an unclosed `<think>` (cut by max_new_tokens) is all thinking; a bare `</think>` (the template
    opened the block in the prompt) ends the thinking; no tags -> ("", text).
    """
    if THINK_CLOSE in text:
        head, _, after = text.partition(THINK_CLOSE)
        before, _, thinking = head.partition(THINK_OPEN) if THINK_OPEN in head else ("", "", head)
        return thinking.strip(), " ".join(part.strip() for part in (before, after) if part.strip())
    if THINK_OPEN in text:
        before, _, thinking = text.partition(THINK_OPEN)
        return thinking.strip(), before.strip()
    return "", text.strip()


def thinking_modes(tokenizer, requested: list[bool]) -> list[bool]:
    """The `requested` enable_thinking modes, in order, where the chat template has the switch; else the one mode the
    model has (SmolLM2): a thinking mode would only repeat it."""
    if has_thinking_switch(tokenizer):
        return requested
    if True in requested:
        log.info("eval.enable_thinking: the chat template has no thinking switch; thinking mode skipped")
    return [False]


def render_prompt(tokenizer, prompt: str, system: str | None, enable_thinking: bool) -> str:
    """The chat-rendered prompt, ending with the assistant's generation prompt."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def stop_token_ids(model, tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos, the model's generation eos and `<|im_end|>` where the vocabulary has it."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer and model define no end-of-sequence token: generation could not stop")
    return sorted(ids)


# prompts are left-padded to a multiple of this: the decoding step's shapes (and its compiled CUDA graphs) then repeat
# across batches and calls instead of changing with every longest prompt; masked padding costs the prefill only
PROMPT_BUCKET = 64


def generate(
    model,
    tokenizer,
    prompts: list[str],
    params: EvalParams,
    *,
    seed: int,
    do_sample: bool = True,
    num_return_sequences: int = 1,
    **step_options: bool,
) -> list[list[Generation]]:
    """`num_return_sequences` generations per chat-rendered prompt, in prompt order.

    Prompts are left-padded in batches of about `params.generation_batch_size` sequences, so the samples of several
    prompts decode together (one decode step costs about the same for 5 rows as for 40). Sampling uses
    `params.temperature` / `params.top_p` (no top-k) and is seeded per batch, so a prompt's samples do not
    depend on what ran before its batch. `step_options`: `decode`'s ablations of its compiled step (the benchmark's).
    """
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    per_batch = max(1, params.generation_batch_size // num_return_sequences)
    model.eval()
    results: list[list[Generation]] = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the last position: pad on the left
    try:
        for start in tqdm(range(0, len(prompts), per_batch), desc="generate", unit="batch", leave=False):
            batch = tokenizer(prompts[start : start + per_batch], return_tensors="pt", padding=True,
                              pad_to_multiple_of=PROMPT_BUCKET, add_special_tokens=False).to(model.device)
            generator = torch.Generator(model.device).manual_seed(seed + start) if do_sample else None
            out = decode(
                model,
                batch["input_ids"].repeat_interleave(num_return_sequences, 0),  # a prompt's samples side by side
                batch["attention_mask"].repeat_interleave(num_return_sequences, 0),
                max_new_tokens=params.max_new_tokens,
                stop_ids=stops,
                pad_id=pad_id,
                do_sample=do_sample,
                temperature=params.temperature,
                top_p=params.top_p,
                generator=generator,
                **step_options,
            )
            rows = [_generation(tokenizer, ids, lp, stops)
                    for ids, lp in zip(out.tokens.tolist(), out.logprobs.tolist())]
            results.extend(rows[i : i + num_return_sequences] for i in range(0, len(rows), num_return_sequences))
    finally:
        tokenizer.padding_side = padding_side
    return results


def _generation(tokenizer, ids: list[int], token_lp: list[float], stops: list[int]) -> Generation:
    end = next((i + 1 for i, tok in enumerate(ids) if tok in stops), None)
    kept = ids[:end] if end else ids
    text = tokenizer.decode(kept[:-1] if end else kept, skip_special_tokens=False)
    thinking, answer = split_thinking(text)
    return Generation(kept, text, thinking, answer, float(sum(token_lp[: len(kept)])), end is not None)
