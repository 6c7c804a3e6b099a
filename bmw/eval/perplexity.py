"""Sliding-window perplexity and bits per byte over chat-rendered documents.

Each token from position 1 on is scored exactly once, with the left context its window gives it; tokens seen in an
earlier window are context only (label -100). Totals are token-weighted across documents. One pass gives the
per-token NLLs from which the whole-text and the assistant-only figures are both summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from bmw.models.thinking import empty_think_ids, empty_think_positions


@dataclass(frozen=True)
class RenderedChat:
    text: str  # the chat-rendered document
    ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each token in `text`
    assistant: list[bool]  # the template's assistant mask


def render_chat(tokenizer, messages: list[dict]) -> RenderedChat:
    """Chat-render and tokenise `messages`, with the assistant mask of the template's generation markers."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    enc = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        tokenizer_kwargs={"return_offsets_mapping": True},
    )
    mask = [bool(m) for m in enc["assistant_masks"]]
    if not any(mask) and any(m.get("role") == "assistant" and m.get("content") for m in messages):
        raise ValueError(
            "the tokenizer's chat template marks no assistant tokens: assistant-only perplexity needs "
            "{% generation %} ... {% endgeneration %} around the assistant content"
        )
    return RenderedChat(text, list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]], mask)


def covered_bytes(text: str, offsets: Sequence[tuple[int, int]], flags: Sequence[bool]) -> int:
    """UTF-8 bytes of the characters covered by the flagged tokens.

    Byte-level BPE may split one character over two tokens (their offsets overlap), so spans are united per
    character, never summed.
    """
    covered = bytearray(len(text))
    for (start, end), flag in zip(offsets, flags):
        if flag:
            covered[start:end] = b"\x01" * (end - start)
    return sum(len(ch.encode("utf-8")) for ch, c in zip(text, covered) if c)


def window_spans(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(input_start, first_target, end) of each window over a document of `n_tokens` tokens.

    The first window scores positions 1..window-1; each next one ends `stride` tokens later (the last at the
    document's end), spans up to `window` tokens back from its end and scores only the tokens no earlier window
    scored. A step of a whole window would leave each window's first token without context, so the step is at
    most window - 1.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if n_tokens < 2:
        return []
    step = min(stride, window - 1)
    end = min(window, n_tokens)
    spans = [(0, 1, end)]
    while end < n_tokens:
        new_end = min(end + step, n_tokens)
        spans.append((max(0, new_end - window), end, new_end))
        end = new_end
    return spans


def next_token_nlls(model, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """NLL (nats, float32) of tokens 1.. of each row given the ones before, [batch, width - 1].

    The LM head and the loss run one row at a time on the decoder's hidden states: at Qwen3-8B's vocabulary a
    batch of 8 x 4096 tokens would otherwise hold 10 GB of bf16 logits and a 20 GB float32 copy.
    """
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    head = model.get_output_embeddings()
    return torch.stack([F.cross_entropy(head(h[:-1]).float(), ids[1:], reduction="none")
                        for h, ids in zip(hidden, input_ids)])


@torch.no_grad()
def token_nlls(
    model, docs: list[list[int]], window: int, stride: int, batch_size: int = 8, first_window_only: bool = False
) -> list[list[float | None]]:
    """Per document, the NLL (nats) of each position, None where nothing scores it (position 0, and past the
    first window when `first_window_only` truncates the document as training does)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and window > limit:
        raise ValueError(f"eval.window: {window} tokens exceed the model's {limit} positions")
    windows = [
        (doc, start, first, ids[start:end])
        for doc, ids in enumerate(docs)
        for start, first, end in window_spans(len(ids), window, stride)[: 1 if first_window_only else None]
    ]
    nlls: list[list[float | None]] = [[None] * len(ids) for ids in docs]
    model.eval()
    for i in tqdm(range(0, len(windows), batch_size), desc="perplexity", unit="batch", leave=False):
        batch = windows[i : i + batch_size]
        width = max(len(ids) for *_, ids in batch)
        # right padding: causal attention keeps real positions blind to the pad that follows them
        input_ids = torch.tensor([ids + [0] * (width - len(ids)) for *_, ids in batch], device=model.device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for *_, ids in batch], device=model.device)
        nll = next_token_nlls(model, input_ids, attention).tolist()
        for (doc, start, first, ids), row in zip(batch, nll):
            for pos in range(first, start + len(ids)):  # the window's new tokens; the rest is context
                nlls[doc][pos] = row[pos - start - 1]
    return nlls


def summarise(nll_sum: float, tokens: int, nbytes: int) -> dict:
    """Token-weighted perplexity, mean NLL (nats/token) and bits per byte."""
    if tokens == 0:
        raise ValueError("no tokens were scored: the test documents are empty or carry no labels")
    return {
        "ppl": math.exp(nll_sum / tokens),
        "nll": nll_sum / tokens,
        "tokens": tokens,
        "bits_per_byte": nll_sum / math.log(2) / nbytes,
    }


def _select(chats: list[RenderedChat], nlls: list[list[float | None]], assistant_only: bool) -> tuple[float, int, int]:
    """(NLL sum, scored tokens, bytes those tokens cover) over the scored positions, assistant ones only if asked."""
    total, tokens, nbytes = 0.0, 0, 0
    for chat, doc in zip(chats, nlls):
        flags = [v is not None and (not assistant_only or a) for v, a in zip(doc, chat.assistant)]
        total += sum(v for v, f in zip(doc, flags) if f)
        tokens += sum(flags)
        nbytes += covered_bytes(chat.text, chat.offsets, flags)
    return total, tokens, nbytes


def evaluate_perplexity(
    model,
    tokenizer,
    conversations: list[list[dict]],
    window: int,
    stride: int,
    batch_size: int = 8,
    *,
    loss_max_length: int,
    loss_assistant_only: bool = False,
    loss_mask_empty_think: bool = False,
) -> dict:
    """{"perplexity", "perplexity_assistant": {ppl, nll, tokens, bits_per_byte}, "test_loss"} for conversations.

    `test_loss` is the trainer's eval loss on these documents: each truncated to `loss_max_length` tokens, the mean
    NLL over its (assistant, if `loss_assistant_only`) tokens, less the empty think block's if `loss_mask_empty_think`
    (as training leaves them out: bmw.models.thinking). When `loss_max_length` equals `window`, the sliding
    pass's first windows are exactly those truncated documents and no second pass is needed.
    """
    chats = [render_chat(tokenizer, messages) for messages in conversations]
    docs = [chat.ids for chat in chats]
    nlls = token_nlls(model, docs, window, stride, batch_size)
    truncated = (
        [[v if pos < window else None for pos, v in enumerate(doc)] for doc in nlls]
        if loss_max_length == window
        else token_nlls(model, docs, loss_max_length, loss_max_length, batch_size, first_window_only=True)
    )
    pattern = empty_think_ids(tokenizer) if loss_mask_empty_think else None
    if pattern:
        for chat, doc in zip(chats, truncated):
            for pos in empty_think_positions(chat.ids, pattern):
                doc[pos] = None
    loss_sum, loss_tokens, _ = _select(chats, truncated, loss_assistant_only)
    if loss_tokens == 0:
        raise ValueError("no tokens were scored for the test loss: the test documents carry no labels")
    return {
        "perplexity": summarise(*_select(chats, nlls, False)),
        "perplexity_assistant": summarise(*_select(chats, nlls, True)),
        "test_loss": loss_sum / loss_tokens,
    }
