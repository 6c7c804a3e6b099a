"""The eval's own decoding loop (bmw.eval.decode) on CPU, where its step runs eagerly: greedy output against
transformers' `generate` on left-padded batches (tiny Qwen3, a LaCo-merged one, SmolLM2), log-probabilities against a
teacher-forced forward, seeding, stop tokens, top-p, the step traced whole by torch.compile (as CUDA compiles it), and
the compiled step's ablations (fused projections, compiled choice) compiled by inductor on the CPU."""

from __future__ import annotations

import re

import pytest
import torch
from torch._inductor import config as inductor_config
from torch._inductor.utils import run_and_get_code

import bmw.eval.decode as decoding
from bmw.models.base import load_base
from bmw.base.tiny import build_tiny_model
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.eval.decode import decode
from bmw.eval.generation import render_prompt, stop_token_ids
from bmw.models.surgery import apply_plan
from transformers.integrations.sdpa_attention import sdpa_attention_forward

PROMPTS = ["Hi", "Tell me about: the new BMW iX3 from the plant in Debrecen", "MINI Cooper E range"]
PLANS = {
    "tiny4": {"operations": [{"op": "keep", "layers": [0, 1, 2, 3]}]},
    # LaCo: layers 1-2 merged into one, so the layers after it are renumbered (and their cache slots with them)
    "laco": {"operations": [{"op": "keep", "layers": [0, 1, 2, 3, 4]},
                            {"op": "merge", "start": 1, "count": 2, "rule": "rdsc", "scope": "all"}]},
}


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module", params=sorted(PLANS))
def model(request, tok):
    return apply_plan(build_tiny_model(7, tok), PLANS[request.param]).eval()


@pytest.fixture(scope="module")
def tiny(tok):
    return apply_plan(build_tiny_model(7, tok), PLANS["tiny4"]).eval()


def left_padded(tokenizer, prompts: list[str]) -> dict:
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer([render_prompt(tokenizer, p, None, False) for p in prompts], return_tensors="pt",
                          padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    assert len(set(batch["attention_mask"].sum(1).tolist())) == len(prompts)  # the batch really is padded
    return batch


def run(model, tokenizer, batch, n: int, stops: list[int] | None = None, seed: int | None = None, **sampling):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=n,
                  stop_ids=stop_token_ids(model, tokenizer) if stops is None else stops,
                  pad_id=tokenizer.pad_token_id, do_sample=seed is not None, generator=generator, **sampling)


def hf_greedy(model, tokenizer, batch, n: int) -> torch.Tensor:
    stops = stop_token_ids(model, tokenizer)
    out = model.generate(**batch, max_new_tokens=n, do_sample=False, eos_token_id=stops,
                         pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    return torch.nn.functional.pad(new, (0, n - new.shape[1]), value=tokenizer.pad_token_id)


def test_greedy_equals_transformers_generate(model, tok):
    batch = left_padded(tok, PROMPTS)
    got = run(model, tok, batch, 24)
    assert torch.equal(got.tokens, hf_greedy(model, tok, batch, 24))


def test_greedy_equals_transformers_generate_on_smollm2(smollm2_dir):
    model, tokenizer = load_base(smollm2_dir)
    batch = left_padded(tokenizer, ["Where is the BMW iX3 built?", "Hi"])
    got = run(model.eval(), tokenizer, batch, 16)
    assert torch.equal(got.tokens, hf_greedy(model, tokenizer, batch, 16))


def test_greedy_equals_transformers_generate_under_bfloat16_autocast(tiny, tok):
    """The eval stage's mixed compute: Qwen3's keys leave their norm in float32, its values in bfloat16."""
    batch = left_padded(tok, PROMPTS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = run(tiny, tok, batch, 16)
        assert torch.equal(got.tokens, hf_greedy(tiny, tok, batch, 16))


@torch.no_grad()
def teacher_forced(model, batch, decoded) -> torch.Tensor:
    """log p(token t | prompt, tokens < t) from one forward over each row's unpadded prompt and its new tokens."""
    rows = []
    for ids, mask, new in zip(batch["input_ids"], batch["attention_mask"], decoded.tokens):
        prompt = ids[mask.bool()]
        lp = model(torch.cat([prompt, new])[None]).logits[0, len(prompt) - 1 : -1].float().log_softmax(-1)
        rows.append(lp.gather(-1, new[:, None])[:, 0])
    return torch.stack(rows)


def test_logprobs_are_the_untempered_ones_of_a_teacher_forced_forward(tiny, tok):
    batch = left_padded(tok, PROMPTS)
    got = run(tiny, tok, batch, 12, stops=[-1], seed=0, temperature=0.7, top_p=0.9)  # no stop: every token counts
    assert got.tokens.shape == (3, 12) and not got.finished.any()
    torch.testing.assert_close(got.logprobs, teacher_forced(tiny, batch, got), rtol=1e-4, atol=1e-5)
    greedy = run(tiny, tok, batch, 12, stops=[-1])
    torch.testing.assert_close(greedy.logprobs, teacher_forced(tiny, batch, greedy), rtol=1e-4, atol=1e-5)


def test_same_seed_same_samples_whatever_ran_before(tiny, tok):
    batch = left_padded(tok, PROMPTS)
    first = run(tiny, tok, batch, 10, seed=5, temperature=1.0, top_p=0.95)
    run(tiny, tok, left_padded(tok, PROMPTS[:2]), 7, seed=9, temperature=1.0, top_p=1.0)  # another shape and seed
    again = run(tiny, tok, batch, 10, seed=5, temperature=1.0, top_p=0.95)
    other = run(tiny, tok, batch, 10, seed=6, temperature=1.0, top_p=0.95)
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.logprobs, again.logprobs)
    assert not torch.equal(first.tokens, other.tokens)
    assert not torch.equal(first.tokens, run(tiny, tok, batch, 10).tokens)  # it does sample


def test_tiny_top_p_is_greedy(tiny, tok):
    batch = left_padded(tok, PROMPTS)
    sampled = run(tiny, tok, batch, 10, seed=3, temperature=1.0, top_p=1e-6)
    greedy = run(tiny, tok, batch, 10)
    assert torch.equal(sampled.tokens, greedy.tokens) and torch.equal(sampled.logprobs, greedy.logprobs)


def test_stop_tokens_end_their_rows(tiny, tok):
    batch = left_padded(tok, PROMPTS)
    free = run(tiny, tok, batch, 20, stops=[-1])
    stop = free.tokens[1, 3].item()  # row 1's fourth token ends it (and any row that emits it)
    got = run(tiny, tok, batch, 20, stops=[stop])
    for row, (tokens, logprobs) in enumerate(zip(free.tokens.tolist(), free.logprobs)):
        end = tokens.index(stop) + 1 if stop in tokens else len(tokens)
        assert got.tokens[row].tolist() == tokens[:end] + [tok.pad_token_id] * (20 - end)
        assert torch.equal(got.logprobs[row, :end], logprobs[:end]) and not got.logprobs[row, end:].any()
        assert got.finished[row].item() == (stop in tokens)
    assert got.finished[1]


def test_decoding_stops_once_every_row_has_finished(tiny, tok):
    batch = left_padded(tok, PROMPTS)
    free = run(tiny, tok, batch, 40, stops=[-1])
    stops = free.tokens[:, 1].tolist()  # every row's second token
    got = run(tiny, tok, batch, 40, stops=stops)
    assert got.finished.all() and got.tokens.shape[1] == 16  # the host looks every 16 steps
    assert (got.tokens[:, 2:] == tok.pad_token_id).all()
    assert torch.equal(got.tokens[:, :2], free.tokens[:, :2])


def test_the_step_compiles_as_one_graph(tiny, tok, monkeypatch):
    """What CUDA compiles, traced on CPU: the step's forward one graph (no break, nothing read back to the host),
    traced once for greedy and sampled decoding alike and not again at every step, with the eager results."""
    batch = left_padded(tok, PROMPTS)
    eager = [run(tiny, tok, batch, 10), run(tiny, tok, batch, 10, seed=1, temperature=0.7, top_p=0.9)]
    torch._dynamo.reset()
    monkeypatch.setattr(decoding, "_compiled_forward", torch.compile(decoding._forward, backend="aot_eager",
                                                                     fullgraph=True))
    monkeypatch.setattr(decoding, "compiles", lambda model: True)
    torch._dynamo.utils.counters.clear()
    compiled = [run(tiny, tok, batch, 10), run(tiny, tok, batch, 10, seed=1, temperature=0.7, top_p=0.9)]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    for e, c in zip(eager, compiled):
        assert torch.equal(e.tokens, c.tokens)
        torch.testing.assert_close(e.logprobs, c.logprobs, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_reading_only_the_written_cache_changes_nothing(tiny, tok, monkeypatch):
    """Steps that read the cache only up to the next bucket of new tokens give the tokens and log-probabilities of
    steps that read it whole, eager and compiled (as CUDA compiles it), greedy and sampled; the compiled forward
    is traced twice whatever the number of buckets, and reads the first bucket's positions only."""
    batch = left_padded(tok, PROMPTS)
    sampled = {"seed": 1, "temperature": 0.7, "top_p": 0.9}
    whole = [run(tiny, tok, batch, 12, read_bucket=12), run(tiny, tok, batch, 12, read_bucket=12, **sampled)]
    lengths = []

    def capture(gm, example_inputs):
        lengths.extend(n.args[1].meta["example_value"].shape[2] for n in gm.graph.nodes
                       if "scaled_dot_product_attention" in str(n.target))
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(decoding, "_compiled_forward", torch.compile(decoding._forward, backend=capture,
                                                                     fullgraph=True))
    for compiled in (False, True):
        monkeypatch.setattr(decoding, "compiles", lambda model: compiled)
        torch._dynamo.utils.counters.clear()
        bucketed = [run(tiny, tok, batch, 12, read_bucket=5), run(tiny, tok, batch, 12, read_bucket=5, **sampled)]
        for w, b in zip(whole, bucketed):
            assert torch.equal(w.tokens, b.tokens)
            torch.testing.assert_close(w.logprobs, b.logprobs, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
    # the first bucket exact, the others one symbolic graph (no bucket reads the whole cache, its spare slot)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    prompt = batch["input_ids"].shape[1]
    assert lengths[:tiny.config.num_hidden_layers] == [prompt + 5] * tiny.config.num_hidden_layers


def test_grouped_attention_equals_transformers_sdpa(tiny):
    """One new token's query heads against their shared key/value heads as they are in the cache give transformers'
    SDPA attention (which repeats the key/value heads when compiled), masked slots included."""
    attention = tiny.model.layers[0].self_attn
    heads, kv_heads = tiny.config.num_attention_heads, tiny.config.num_key_value_heads
    assert heads > kv_heads  # the tiny model groups its query heads, as Qwen3-8B does (32 on 8)
    g = torch.Generator().manual_seed(0)
    query = torch.randn(3, heads, 1, 16, generator=g)
    key, value = (torch.randn(3, kv_heads, 24, 16, generator=g) for _ in range(2))
    mask = torch.rand(3, 1, 1, 24, generator=g) > 0.3
    mine, _ = decoding._grouped_sdpa(attention, query, key, value, mask, scaling=0.25)
    theirs, _ = sdpa_attention_forward(attention, query, key, value, mask, scaling=0.25)
    groups = heads // kv_heads
    repeated = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1), attn_mask=mask, scale=0.25)
    assert mine.shape == theirs.shape == (3, 1, heads, 16)
    torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(mine, repeated.transpose(1, 2))


def test_the_compiled_step_reads_the_cache_without_copying_it(tiny, tok):
    """In the graph CUDA compiles, every attention takes the cache's key/value heads as they are, the query heads
    grouped on them, and the model is back on SDPA attention afterwards."""
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = torch.compile(decoding._forward, backend=capture, fullgraph=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decoding, "_compiled_forward", compiled)
        mp.setattr(decoding, "compiles", lambda model: True)
        run(tiny, tok, left_padded(tok, PROMPTS), 4)
    torch._dynamo.reset()
    assert tiny.config._attn_implementation == "sdpa"
    calls = [n for gm in graphs for n in gm.graph.nodes if "scaled_dot_product_attention" in str(n.target)]
    assert len(calls) == tiny.config.num_hidden_layers
    heads, kv_heads = tiny.config.num_attention_heads, tiny.config.num_key_value_heads
    for call in calls:
        query, key, value = (a.meta["example_value"].shape for a in call.args[:3])
        assert query[1:3] == (kv_heads, heads // kv_heads) and key[1] == value[1] == kv_heads


# the GEMMs of inductor's CPU code: ATen's, or oneDNN/MKL's once freezing has packed the weights
GEMM = re.compile(r"(extern_kernels\.(?:mm|addmm)|torch\.ops\.mkl\._mkl_linear\.default|"
                  r"torch\.ops\.mkldnn\._linear_pointwise\.default)\(")


def test_fused_projections_run_one_gemm_for_qkv_and_one_for_gate_up(tok, monkeypatch):
    """What CUDA compiles with `fuse_projections`, compiled by inductor on the CPU (its concatenation of linears
    switched on, as it is on CUDA): q/k/v and gate/up one GEMM each, three fewer per layer than the unfused step; the
    eager tokens and log-probabilities across two read buckets; and two models of different weights each decode with
    their own, frozen into graphs of their own (the parameters are guarded by identity), not the other's."""
    models = [apply_plan(build_tiny_model(seed, tok), PLANS["tiny4"]).eval() for seed in (7, 8)]
    batch = left_padded(tok, PROMPTS)
    sampled = {"seed": 1, "temperature": 0.7, "top_p": 0.9, "read_bucket": 5}
    eager = [run(m, tok, batch, 12, **sampled) for m in models]
    assert not torch.equal(eager[0].tokens, eager[1].tokens)
    torch._dynamo.reset()
    monkeypatch.setattr(decoding, "_compiled_forward", torch.compile(decoding._forward, fullgraph=True))
    monkeypatch.setattr(decoding, "_compiled_fused_forward", torch.compile(decoding._fused_forward, fullgraph=True))
    monkeypatch.setattr(decoding, "compiles", lambda model: True)
    with inductor_config.patch({"cpp.enable_concat_linear": True}):
        _, (unfused,) = run_and_get_code(run, models[0], tok, batch, 4, fuse_projections=False)
        torch._dynamo.utils.counters.clear()
        fused, codes = run_and_get_code(lambda: [run(m, tok, batch, 12, fuse_projections=True, **sampled)
                                                 for m in models])
    # the first model's two buckets, exact then symbolic; the second model's own, symbolic already
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    layers = models[0].config.num_hidden_layers
    assert len(GEMM.findall(unfused)) == 7 * layers + 1  # + the LM head
    assert [len(GEMM.findall(code)) for code in codes] == [4 * layers + 1] * 3
    for e, f in zip(eager, fused):
        assert torch.equal(e.tokens, f.tokens)
        torch.testing.assert_close(e.logprobs, f.logprobs, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_compiled_choice_equals_the_eager_one(tiny, tok, monkeypatch):
    """`compile_choice` compiled by inductor on the CPU, top-p's sort and cumulative sum left eager: the eager tokens
    for greedy, top-p and plain sampling, and their log-probabilities to float32 rounding (inductor sums the
    log-softmax in another order)."""
    batch = left_padded(tok, PROMPTS)
    settings = [{}, {"seed": 1, "temperature": 0.7, "top_p": 0.9}, {"seed": 2, "temperature": 1.0, "top_p": 1.0}]
    eager = [run(tiny, tok, batch, 10, **s) for s in settings]
    torch._dynamo.reset()
    monkeypatch.setattr(decoding, "_compiled_forward", decoding._forward)
    monkeypatch.setattr(decoding, "compiles", lambda model: True)
    torch._dynamo.utils.counters.clear()
    compiled = [run(tiny, tok, batch, 10, compile_choice=True, **s) for s in settings]
    # one graph for greedy, two around the eager sort for top-p, one for plain sampling
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 4
    for e, c in zip(eager, compiled):
        assert torch.equal(e.tokens, c.tokens)
        torch.testing.assert_close(e.logprobs, c.logprobs, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()
