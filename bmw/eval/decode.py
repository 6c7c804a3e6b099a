"""The eval's own decoding loop: a left-padded batch is prefilled once, then decoded one fixed-shape step per token.

Why not `model.generate`: at Qwen3-8B's shape on an H200 its decoding step took ~17 ms against a ~3.4 ms weight
read (Python and launch overhead between small kernels), and `output_logits=True` - the only way it gives the sampled
tokens' log-probabilities - keeps every step's float32 logits (40 rows x 151,936 x 512 steps: 12 GB), which ran an
80 GB H100 out of memory at generation_batch_size 64. Here only the chosen token's log-probability is kept.

What is compiled, and why it can be: `_forward` - one forward of the (B, 1) new tokens through a transformers
StaticCache; the choice of the next token (greedy, or temperature + top-p sampling), its untempered log-probability
and the finished mask follow eagerly (`_choose`). Every input has the same shape at every step: the cache is
preallocated for prompt + new tokens (+ a spare slot) and writes at its own position counter (a tensor held by the
cache, marked a static address by transformers, advanced in place), the position ids are a (B, 1) tensor, and the 2D
attention mask has the cache's fixed length: the prompt's left-padding zeros, then ones for every new slot - slots
not written yet lie in the future of the causal mask (whose query offset is that counter), so the mask never changes
within a batch. Only the length of cache the attention reads changes, once every READ_BUCKET steps. Nothing in the
step reads a value back to the host. On CUDA it is compiled with mode="reduce-overhead", so CUDA graphs replay a
whole forward with one launch; the prefill (run once per batch, its length varies) and the host loop stay eager.
While it decodes, a model on SDPA attention reads each key/value head once for all the query heads it serves
(`_grouped_sdpa`), where transformers' compiled SDPA path would copy the cache four times over at Qwen3-8B's shape.

Sampling draws no random numbers inside the step: uniform noise from a per-batch torch.Generator is drawn outside
and passed in, and the token is chosen by an exponential race (argmax p / E, E = -log U), which samples the kept
distribution exactly. No RNG state lives in a graph, and a seed gives the same samples whatever ran before.

The host looks at the finished mask only every `check_every` steps (a sync) and stops once every row has emitted a
stop token; a finished row emits `pad_id` with log-probability 0 meanwhile.

Two ablations of the compiled step, off by default (`decode`'s `fuse_projections` and `compile_choice`):
- Fused projections: the step compiled with inductor's freezing, which bakes the weights into the graph as constants
  and concatenates those of matmuls sharing an input, so q/k/v become one GEMM and gate/up another (the small k/v
  GEMMs ran at half the bandwidth of the others on an H100). Dynamo reads `freezing` from the global inductor config
  while it traces (`torch.compile(options={"freezing": True})` alone leaves the weights graph inputs and fuses nothing),
  so the call is made under a config patch; frozen, every parameter is guarded by identity, so another model compiles
  graphs of its own (`recompile_limit`: 4 models a process, two graphs each), and a compiled model's weights stay
  alive with its graphs. Its cost: each graph holds its own concatenated copy of q/k/v and gate/up (9.1 GB at
  Qwen3-8B's shape in bfloat16, and a model compiles two graphs), and weights changed in place are not seen.
- Compiled choice: `_choose` compiled (no CUDA graphs: its outputs are kept across steps) except top-p's sort and
  cumulative sum (`_ranked`), which stay eager: inductor failed on the scan fused with the reductions around it.

On a CPU, and for a model transformers does not mark compilable, the very same forward and choice run eagerly.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch._inductor import config as inductor_config
from torch.nn import functional as F
from transformers import AttentionInterface, StaticCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    tokens: torch.Tensor  # (B, n) new tokens, pad after a row's first stop token; n < N when all rows stopped early
    logprobs: torch.Tensor  # (B, n) float32 untempered log-probability of each token; 0 after the stop token
    finished: torch.Tensor  # (B,) bool: the row emitted a stop token


def _choose(logits: torch.Tensor, finished: torch.Tensor, noise: torch.Tensor | None, stops: torch.Tensor,
            pad_id: int, temperature: float, top_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next token, its untempered log-probability, finished after it) per row; greedy when `noise` is None."""
    logits = logits.float()
    if noise is None:
        token = logits.argmax(-1)
    else:
        probs = (logits / temperature).softmax(-1)
        if top_p < 1.0:
            # top-p keeps the most likely tokens until their mass reaches top_p (the first always stays): a token
            # goes when the tokens ranked above it already hold top_p
            probs, order, above = _ranked(probs)
            probs = probs.masked_fill(above >= top_p, 0.0)
            token = order.gather(-1, (probs / -noise.log()).argmax(-1, keepdim=True)).squeeze(-1)
        else:
            token = (probs / -noise.log()).argmax(-1)  # E = -log U > 0 for U in [0, 1)
    logprob = logits.log_softmax(-1).gather(-1, token[:, None]).squeeze(-1)
    token = torch.where(finished, pad_id, token)
    logprob = torch.where(finished, 0.0, logprob)
    return token, logprob, finished | torch.isin(token, stops)


@torch.compiler.disable
def _ranked(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The probabilities sorted in descending order, their token ids, and the mass ranked above each. Eager even
    within a compiled `_choose`: inductor could not compile the cumulative sum fused with the reductions around it."""
    probs, order = probs.sort(-1, descending=True)
    return probs, order, probs.cumsum(-1) - probs


# graphs for greedy and sampled choices, and for each top-p; dynamic=None as for the forward (below)
_compiled_choose = torch.compile(_choose)


def _forward(model, cache: StaticCache, token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor,
             attended: int | None = None):
    """One decoding step's forward (the compiled unit): the (B, V) logits of the new tokens. `attended`: how many
    of the cache's first positions the step's attention reads (`_grouped_sdpa`); None, all."""
    extra = {} if attended is None else {"attended": attended}
    return model(input_ids=token[:, None], position_ids=position, attention_mask=mask, past_key_values=cache,
                 use_cache=True, **extra).logits[:, -1]


def _grouped_sdpa(module, query, key, value, attention_mask, attended: int | None = None, **kwargs):
    """transformers' SDPA attention, except that one new token reads only the cache's first `attended` positions
    (the rest are not written yet; None reads all), and its query heads read their shared key/value head as it is
    in the cache.

    Compiled, transformers' SDPA path copies every key/value head once per query head it serves (`repeat_kv`)
    whenever a mask is given, and the decoding step always has one (the static cache's unwritten slots). At Qwen3-8B's
    shape (32 query heads on 8 key/value heads), 40 rows and ~700 cached positions, that copy is four times the
    cache: ~17 GB written and read again per step, beside 16.4 GB of weights. Here the query heads of each key/value
    head become the rows of one query, (B, kv heads, groups, D), against the cache's (B, kv heads, L, D); the mask,
    the same for every head and row, broadcasts. Everything else (prefill, no grouping, a position bias, softcapping)
    goes to transformers' SDPA attention."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    if length == 1 and attended is not None:
        key, value = key[:, :, :attended], value[:, :, :attended]
        attention_mask = None if attention_mask is None else attention_mask[..., :attended]
    if length != 1 or groups == 1 or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    out = F.scaled_dot_product_attention(query.reshape(batch, heads // groups, groups, dim), key, value,
                                         attn_mask=attention_mask, scale=kwargs.get("scaling"))
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


GROUPED_SDPA = "bmw_grouped_sdpa"
AttentionInterface.register(GROUPED_SDPA, _grouped_sdpa)
AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)


@contextmanager
def _grouped_attention(model):
    """The model's SDPA attention swapped for `_grouped_sdpa` while it decodes; any other attention is left alone.
    Yields whether it was swapped."""
    if model.config._attn_implementation != "sdpa":
        yield False
        return
    model.set_attn_implementation(GROUPED_SDPA)
    try:
        yield True
    finally:
        model.set_attn_implementation("sdpa")


# A step's attention reads the cache's first prompt + k * READ_BUCKET positions, k the least that covers the
# positions written so far, instead of all prompt + max_new_tokens: at 512 new tokens the unwritten slots were about
# half of every step's cache read (the cache is ~a fifth of a step's bytes at Qwen3-8B's shape, 40 rows). Each k is
# a shape of its own, a CUDA graph recorded; compiled are the first k's exact shape, then a symbolic length: two
# graphs, however many buckets and batches. The cache has one slot more than it is written, so that no bucket reads
# it whole: such a slice is the tensor itself, which compiled a graph of its own.
READ_BUCKET = 128

# By default only the forward is compiled: inductor cannot lower top-p's cumulative sum over the vocabulary fused with
# the reductions around it ("NYI TritonSplitDimKernel reductions", torch 2.11 on an H100), and the choice is a handful
# of kernels per step (`compile_choice` compiles the rest of it). dynamic=None: the first (batch, cache length) is
# compiled for its exact shape, a second one recompiles once with symbolic sizes; CUDA graphs are recorded per shape
# either way
_compiled_forward = torch.compile(_forward, mode="reduce-overhead")


def _fused_forward(model, cache: StaticCache, token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor,
                   attended: int | None = None):
    """`_forward` under a code object of its own: dynamo keeps graphs per code object, and the unfused step's graphs
    would otherwise serve a fused call of the same model and shapes (their guards pass), or the reverse."""
    return _forward(model, cache, token, position, mask, attended)


_compiled_fused_forward = torch.compile(_fused_forward, mode="reduce-overhead")


def _frozen_forward(*args):
    """The fused step (module docstring): compiled with the weights frozen into the graph."""
    with inductor_config.patch(freezing=True):
        return _compiled_fused_forward(*args)


class _Cache(StaticCache):
    """A StaticCache that stores keys and values in the model's dtype.

    Under autocast over float32 weights (the eval stage's bfloat16 compute) Qwen3's keys leave their RMSNorm in
    float32 and its values in bfloat16, while a StaticCache allocates both in the keys' dtype at its first write. The
    values' upcast is exact, and attention casts both as it would have without the cache.
    """

    def __init__(self, config, max_cache_len: int, dtype: torch.dtype):
        super().__init__(config=config, max_cache_len=max_cache_len)
        self.states_dtype = dtype

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        dtype = self.states_dtype
        return super().update(key_states.to(dtype), value_states.to(dtype), layer_idx, *args, **kwargs)


# one cache per model, reused while (batch, length) stay, as transformers' generate keeps its static cache: CUDA graphs
# read the cache at fixed addresses (a new cache would mean recording them again), and its memory is not allocated
# again for every batch
_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _static_cache(model, batch: int, length: int, device: torch.device) -> StaticCache:
    key = (batch, length, model.dtype, device)
    held = _caches.get(model)
    if held is not None and held[0] == key:
        held[1].reset()
        return held[1]
    _caches.pop(model, None)  # free the old cache before the new one is allocated
    cache = _Cache(model.config, length, model.dtype)
    _caches[model] = (key, cache)
    return cache


def compiles(model) -> bool:
    """Whether the forward is compiled for this model: on CUDA, for architectures transformers can compile whole."""
    if model.device.type != "cuda":
        return False
    if getattr(model, "_can_compile_fullgraph", False):
        return True
    if type(model) not in _warned:
        _warned.add(type(model))
        log.warning("decode: transformers does not mark %s compilable: its decoding forward runs eagerly (slower)",
                    type(model).__name__)
    return False


_warned: set[type] = set()


@torch.no_grad()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int,
           stop_ids: list[int], pad_id: int, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
           generator: torch.Generator | None = None, check_every: int = 16, read_bucket: int = READ_BUCKET,
           fuse_projections: bool = False, compile_choice: bool = False) -> Decoded:
    """Up to `max_new_tokens` tokens continuing each row of the left-padded `input_ids` (B, P).

    Greedy when `do_sample` is false; else sampled at `temperature` among the top-p mass, with noise from
    `generator` (on the model's device). A row ends at its first token of `stop_ids`. A model on SDPA attention
    reads the cache up to the next multiple of `read_bucket` new tokens (`READ_BUCKET`). Where the step compiles
    (`compiles`), `fuse_projections` freezes its weights so that q/k/v and gate/up each run as one GEMM, and
    `compile_choice` compiles the choice of the next token too (module docstring).
    """
    with _grouped_attention(model) as grouped:
        batch, prompt_len = input_ids.shape
        device = input_ids.device
        length = prompt_len + max_new_tokens + 1  # the spare slot (READ_BUCKET), never written nor read
        cache = _static_cache(model, batch, length, device)
        attention_mask = attention_mask.to(device=device, dtype=torch.long)
        mask = torch.cat([attention_mask, attention_mask.new_ones(batch, max_new_tokens + 1)], dim=1)
        # left padding: a row's first real token is position 0
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        stops = torch.tensor(stop_ids, device=device)
        settings = {"stops": stops, "pad_id": pad_id, "temperature": temperature, "top_p": top_p}

        def noise(vocab: int) -> torch.Tensor | None:
            return torch.rand(batch, vocab, generator=generator, device=device) if do_sample else None

        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
        vocab = logits.shape[-1]
        compiled = compiles(model)
        choose = _compiled_choose if compiled and compile_choice else _choose
        token, logprob, finished = choose(logits, torch.zeros(batch, dtype=torch.bool, device=device),
                                          noise(vocab), **settings)
        del logits
        position = positions[:, -1:] + 1
        forward = (_frozen_forward if fuse_projections else _compiled_forward) if compiled else _forward
        tokens, logprobs = [token], [logprob]
        for t in range(1, max_new_tokens):
            if t % check_every == 0 and bool(finished.all()):
                break
            # step t writes cache position prompt_len + t - 1 and attends to every position up to it
            attended = min(prompt_len + -(-t // read_bucket) * read_bucket, length - 1) if grouped else None
            # the choice reads the logits before the next replay overwrites them (CUDA graphs reuse their outputs)
            logits = forward(model, cache, token, position, mask, attended)
            token, logprob, finished = choose(logits, finished, noise(vocab), **settings)
            position = position + 1
            tokens.append(token)
            logprobs.append(logprob)
        return Decoded(torch.stack(tokens, 1), torch.stack(logprobs, 1), finished)
