"""Evaluation on a real tiny Qwen3 (the shipped tokenizer, the first 4 of the tiny base's 36 layers, CPU):
perplexity against plain reference loops, generation, semantic entropy, multiple choice against
lm-evaluation-harness on a local task, and the outputs of a whole evaluation."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bmw.base.tiny import build_tiny_model
from bmw.base.tokenizer import load_tiny_tokenizer
from bmw.eval.evaluate import evaluate_model, evaluate_variant
from bmw.eval import generation
from bmw.eval.decode import Decoded, decode
from bmw.eval.generation import generate, render_prompt, split_thinking
from bmw.eval.qa_generation import answer_tokens, token_f1
from bmw.eval.multiple_choice import (
    choice_metrics,
    encode_pair,
    evaluate_mcqa,
    loglikelihoods,
    qa_loglik,
)
from bmw.eval.perplexity import (
    covered_bytes,
    evaluate_perplexity,
    render_chat,
    token_nlls,
    window_spans,
)
from bmw.eval.semantic_entropy import (
    discrete_entropy,
    embedding_clusterer,
    load_embedder,
    make_clusterer,
    minilm_dir,
    nli_clusterer,
    semantic_entropy,
    weighted_entropy,
)
from bmw.io import read_jsonl, write_jsonl
from bmw.models.surgery import apply_plan
from bmw.models.thinking import empty_think_ids, empty_think_positions
from bmw.params import EvalParams, ParamsError, parse_params

ROOT = Path(__file__).resolve().parents[1]
LM_EVAL_TASKS = ROOT / "tests" / "fixtures" / "lm_eval"
SYSTEM = "You are a writer for BMW Group Corporate Communications."
ARTICLES = [
    "The BMW Group delivered 2.45 million vehicles in 2024. Deliveries of fully electric cars rose by 13.5 per cent.",
    "Series production of the BMW iX3 starts at the plant in Debrecen, Hungary, in autumn 2025. Größe: 4.78 m.",
    "The MINI Cooper E offers a range of up to 305 km and charges at up to 75 kW, priced from € 32,900.",
]


def conversation(i: int) -> list[dict]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tell me about: release {i}"},
            {"role": "assistant", "content": ARTICLES[i]}]


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    # the tiny base cut to its first 4 layers by the project's own surgery: a real Qwen3, 9x cheaper on CPU
    return apply_plan(build_tiny_model(7, tok), {"operations": [{"op": "keep", "layers": [0, 1, 2, 3]}]}).eval()


@torch.no_grad()
def next_token_logprob(model, context: list[int], token: int) -> float:
    return model(torch.tensor([context])).logits[0, -1].float().log_softmax(-1)[token].item()


@torch.no_grad()
def full_context_logprobs(model, ids: list[int]) -> list[float]:
    """log p(ids[t] | ids[:t]) for t = 1..n-1: one forward pass over the whole document, no windows."""
    lp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [lp[t - 1, ids[t]].item() for t in range(1, len(ids))]


# --- perplexity ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,window,stride",
                         [(1, 8, 4), (2, 8, 4), (8, 8, 4), (9, 8, 4), (50, 8, 3), (50, 8, 8), (50, 16, 1), (7, 64, 32)])
def test_windows_score_every_token_but_the_first_exactly_once(n, window, stride):
    spans = window_spans(n, window, stride)
    targets = [t for _, first, end in spans for t in range(first, end)]
    assert targets == list(range(1, n))
    for start, first, end in spans:
        assert end - start <= window and start < first  # every target has at least one token of context


def test_single_window_perplexity_equals_plain_loop(model, tok):
    convs = [conversation(i) for i in range(3)]
    total, count = 0.0, 0
    for messages in convs:
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        total -= sum(full_context_logprobs(model, ids))
        count += len(ids) - 1
    got = evaluate_perplexity(model, tok, convs, 512, 256, 2, loss_max_length=512)
    assert got["perplexity"]["tokens"] == count
    assert got["perplexity"]["nll"] == pytest.approx(total / count, rel=1e-5)
    assert got["perplexity"]["ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)
    # untruncated documents: the trainer-style loss is the same mean, from the shared pass or its own
    assert got["test_loss"] == pytest.approx(total / count, rel=1e-5)
    own_pass = evaluate_perplexity(model, tok, convs, 512, 256, 2, loss_max_length=600)["test_loss"]
    assert own_pass == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("window,stride", [(8, 3), (6, 6)])
def test_sliding_window_equals_slow_reference(model, tok, window, stride):
    messages = [{"role": "user", "content": "Where is the iX3 built?"},
                {"role": "assistant", "content": "In Debrecen."}]
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    n = len(ids)
    assert n > 3 * window
    # independently: windows end at window, window+step, ... (clipped at n); a token is scored in the first
    # window ending after it, with that window's tokens before it as context
    step = min(stride, window - 1)
    ends = list(range(window, n, step)) + [n]
    reference = 0.0
    for t in range(1, n):
        end = next(e for e in ends if e > t)
        reference -= next_token_logprob(model, ids[max(0, end - window) : t], ids[t])
    got = evaluate_perplexity(model, tok, [messages], window, stride, 4, loss_max_length=window)["perplexity"]
    assert got["tokens"] == n - 1
    assert got["nll"] * got["tokens"] == pytest.approx(reference, rel=1e-5)
    (nlls,) = token_nlls(model, [ids], window, stride)
    assert nlls[0] is None and None not in nlls[1:]


def test_assistant_only_scores_the_assistant_mask(model, tok):
    messages = conversation(2)
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    reference = -sum(lp for lp, m in zip(full_context_logprobs(model, ids), mask[1:]) if m)
    got = evaluate_perplexity(model, tok, [messages], 512, 256, loss_max_length=512)["perplexity_assistant"]
    assert got["tokens"] == sum(mask) > 0
    assert got["nll"] * got["tokens"] == pytest.approx(reference, rel=1e-5)
    # the mask covers the assistant content and its end-of-turn token: those are the scored bytes
    nbytes = len((ARTICLES[2] + "<|im_end|>").encode())
    assert got["bits_per_byte"] == pytest.approx(reference / math.log(2) / nbytes)


def test_bits_per_byte_counts_the_scored_text(model, tok):
    messages = conversation(1)  # non-ASCII: "ö", "ß" are split across byte-level tokens
    chat = render_chat(tok, messages)
    assert covered_bytes(chat.text, chat.offsets, [True] * len(chat.ids)) == len(chat.text.encode())
    got = evaluate_perplexity(model, tok, [messages], 64, 32, loss_max_length=64)["perplexity"]
    nbytes = len(chat.text.encode()) - len("<|im_start|>")  # all but the unscored first token
    assert got["bits_per_byte"] == pytest.approx(got["nll"] * got["tokens"] / math.log(2) / nbytes)


@pytest.mark.parametrize("assistant_only, mask_empty_think", [(False, False), (True, False), (False, True)])
def test_test_loss_scores_the_first_max_length_tokens(model, tok, assistant_only, mask_empty_think):
    """As training scores them: the assistant tokens or all, less the empty think block's where training masks it."""
    messages = conversation(0)
    enc = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    length = len(enc["input_ids"]) - 8
    ids, mask = enc["input_ids"][:length], enc["assistant_masks"][:length]
    block = set(empty_think_positions(ids, empty_think_ids(tok))) if mask_empty_think else set()
    assert len(block) == (4 if mask_empty_think else 0)
    scored = [lp for pos, (lp, m) in enumerate(zip(full_context_logprobs(model, ids), mask[1:]), 1)
              if (m or not assistant_only) and pos not in block]
    reference = -sum(scored) / len(scored)
    for window in (length, 2 * length):  # from the sliding pass's first windows, and from a pass of its own
        got = evaluate_perplexity(model, tok, [messages], window, window // 2, loss_max_length=length,
                                  loss_assistant_only=assistant_only, loss_mask_empty_think=mask_empty_think)
        assert got["test_loss"] == pytest.approx(reference, rel=1e-5)


def test_template_without_generation_markers_is_rejected(tok):
    plain = copy.deepcopy(tok)
    plain.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
    )
    with pytest.raises(ValueError, match="generation"):
        render_chat(plain, conversation(0))


def test_bad_window_is_rejected(model):
    with pytest.raises(ValueError, match="window"):
        window_spans(10, 1, 1)
    with pytest.raises(ValueError, match="eval.window: 4096 tokens exceed the model's 2048 positions"):
        token_nlls(model, [[1, 2, 3]], 4096, 512)


# --- generation ---------------------------------------------------------------------------------------------------


PROMPTS = ["Hi", "Tell me about: the new BMW iX3 from the plant in Debrecen", "MINI Cooper E range"]


def test_left_padded_batch_equals_single_prompts_and_a_manual_greedy_loop(model, tok):
    p = EvalParams(max_new_tokens=6, generation_batch_size=4)
    rendered = [render_prompt(tok, q, SYSTEM, False) for q in PROMPTS]
    assert len({len(tok(r)["input_ids"]) for r in rendered}) == 3  # the batch really is padded
    batched = generate(model, tok, rendered, p, seed=0, do_sample=False)
    for prompt, (gen,) in zip(rendered, batched):
        (single,) = generate(model, tok, [prompt], p, seed=0, do_sample=False)[0]
        assert gen.token_ids == single.token_ids
        assert gen.logprob == pytest.approx(single.logprob, abs=1e-4)
    # the new tokens are exactly what argmax decoding continues the prompt with, with their log-probabilities
    ids = tok(rendered[1])["input_ids"]
    manual, logprob = [], 0.0
    with torch.no_grad():
        for _ in range(len(batched[1][0].token_ids)):
            lp = model(torch.tensor([ids + manual])).logits[0, -1].log_softmax(-1)
            manual.append(int(lp.argmax()))
            logprob += lp[manual[-1]].item()
    assert batched[1][0].token_ids == manual
    assert batched[1][0].logprob == pytest.approx(logprob, abs=1e-4)
    assert batched[1][0].text == tok.decode(manual[:-1] if batched[1][0].finished else manual)


def test_sampling_is_seeded(model, tok):
    p = EvalParams(max_new_tokens=6, generation_batch_size=4, temperature=1.0, top_p=1.0)
    rendered = [render_prompt(tok, q, SYSTEM, False) for q in PROMPTS[:2]]
    first = generate(model, tok, rendered, p, seed=3, num_return_sequences=2)
    again = generate(model, tok, rendered, p, seed=3, num_return_sequences=2)
    other = generate(model, tok, rendered, p, seed=4, num_return_sequences=2)
    ids = lambda gens: [[g.token_ids for g in row] for row in gens]  # noqa: E731
    assert ids(first) == ids(again) != ids(other)
    assert [len(row) for row in first] == [2, 2]


@pytest.mark.parametrize("text,thinking,answer", [
    ("<think>\nIt is built in Debrecen.\n</think>\n\nIn Debrecen.", "It is built in Debrecen.", "In Debrecen."),
    ("<think>\n\n</think>\n\nMunich", "", "Munich"),
    ("plain answer ", "", "plain answer"),
    ("<think>still reasoning when max_new_tokens ran out", "still reasoning when max_new_tokens ran out", ""),
    ("reasoning opened by the prompt</think>\n\nanswer", "reasoning opened by the prompt", "answer"),
    ("Sure. <think>hmm</think>Yes.", "hmm", "Sure. Yes."),  # what comes before the block is not lost
    ("", "", ""),
])
def test_split_thinking(text, thinking, answer):
    assert split_thinking(text) == (thinking, answer)


@pytest.mark.parametrize("prediction,reference,f1", [
    ("In Debrecen, Hungary.", "in debrecen hungary", 1.0),  # case, punctuation
    ("The plant is in Debrecen.", "Debrecen", 0.4),  # precision 1/4 (articles dropped), recall 1
    ("Munich", "Debrecen", 0.0),
    ("", "", 1.0),
    ("", "Debrecen", 0.0),
])
def test_token_f1_by_hand(prediction, reference, f1):
    assert token_f1(prediction, reference) == pytest.approx(f1)


def test_answer_tokens_drop_articles_and_unicode_punctuation():
    assert answer_tokens("The BMW iX3 – a car “built” in Debrecen…") == ["bmw", "ix3", "car", "built", "in", "debrecen"]


def test_thinking_switch_reaches_the_template(tok):
    assert render_prompt(tok, "Hi", None, False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_prompt(tok, "Hi", None, True).endswith("<|im_start|>assistant\n")


# --- semantic entropy ---------------------------------------------------------------------------------------------


def test_entropies_by_hand():
    assert discrete_entropy([0, 0, 0, 0, 0]) == 0
    assert discrete_entropy([0, 1, 2, 3, 4]) == pytest.approx(math.log(5))
    assert weighted_entropy([0, 0, 0], [-3.0, -1.0, -9.0], [1, 1, 1]) == pytest.approx(0.0)
    assert weighted_entropy([0, 1, 2, 3, 4], [-2.0] * 5, [1] * 5) == pytest.approx(math.log(5))
    p = 0.75  # clusters {a, b} and {c} with probabilities .5, .25, .25
    expected = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert weighted_entropy([0, 0, 1], [math.log(0.5), math.log(0.25), math.log(0.25)], [1, 1, 1]) == pytest.approx(
        expected)
    # two answers, both at -1 nat per token, 2 and 20 tokens long: equally likely per token -> ln 2, not ~0
    assert weighted_entropy([0, 1], [-2.0, -20.0], [2, 20]) == pytest.approx(math.log(2))


@pytest.fixture(scope="module")
def minilm():
    return load_embedder()


def test_embedding_clustering_with_minilm(minilm):
    cluster = embedding_clusterer(0.9, minilm)
    answers = ["The car is built in Munich.", "The car is built in Berlin.", "The vehicle is produced in Munich.",
               "Revenue rose by 4 per cent.", "The car is built in Munich."]
    assert cluster(answers) == [0, 1, 0, 2, 0]
    assert embedding_clusterer(0.5, minilm)(answers) == [0, 0, 0, 1, 0]  # a loose threshold merges Munich and Berlin


def test_semantic_entropy_extremes_on_the_model(model, tok, minilm, monkeypatch):
    prompts = [{"id": f"p{i}", "prompt": q} for i, q in enumerate(PROMPTS)]
    exact = embedding_clusterer(1.0 - 1e-6, minilm)
    # near-zero temperature: every sample is the greedy answer -> one cluster, entropy 0
    cold = EvalParams(se_samples=3, se_prompts=2, max_new_tokens=5, temperature=1e-4, top_p=1.0,
                      generation_batch_size=6)
    summary, rows = semantic_entropy(model, tok, prompts, cold, seed=1, system=SYSTEM, clusterer=exact)
    assert summary == {"discrete": 0.0, "weighted": 0.0, "clustering": "embedding", "prompts": 2, "samples": 3}
    assert [r["id"] for r in rows] == ["p0", "p1"] and all(len(r["samples"]) == 3 for r in rows)
    # hot sampling over a random model's vocabulary: all answers differ -> log M
    hot = cold.model_copy(update={"temperature": 5.0})
    calls = []
    monkeypatch.setattr(generation, "decode", lambda model, ids, *a, **k: calls.append(ids.shape) or decode(
        model, ids, *a, **k))
    summary, rows = semantic_entropy(model, tok, prompts, hot, seed=1, system=SYSTEM, clusterer=exact)
    assert [shape[0] for shape in calls] == [6]  # both prompts' 3 samples in one batch: 6 = generation_batch_size
    assert summary["discrete"] == pytest.approx(math.log(3))
    for row in rows:
        assert [s["cluster"] for s in row["samples"]] == [0, 1, 2]
        assert row["weighted"] == pytest.approx(weighted_entropy(
            [0, 1, 2], [s["logprob"] for s in row["samples"]], [s["tokens"] for s in row["samples"]]))


def _tiny_nli(path: Path, verdict: str) -> Path:
    """A BERT NLI classifier (MiniLM's vocabulary) whose bias makes it always answer `verdict`."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
    )

    labels = ["entailment", "neutral", "contradiction"]
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)})
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0 if n == verdict else 0.0 for n in labels]))
    model.save_pretrained(path)
    BertTokenizerFast.from_pretrained(minilm_dir()).save_pretrained(path)
    return path


def test_nli_clustering_uses_bidirectional_entailment(tmp_path):
    answers = ["In Munich.", "In Munich, Germany.", "In Berlin."]
    assert nli_clusterer(_tiny_nli(tmp_path / "yes", "entailment"))(answers) == [0, 0, 0]
    assert nli_clusterer(_tiny_nli(tmp_path / "no", "contradiction"))(answers) == [0, 1, 2]
    with pytest.raises(ValueError, match="eval.nli_model"):
        make_clusterer(EvalParams(se_clustering="nli"))
    with pytest.raises(ValueError, match="eval.nli_model"):
        make_clusterer(EvalParams(se_clustering="nli", nli_model=str(tmp_path / "absent")))


# --- multiple choice ----------------------------------------------------------------------------------------------


def test_encode_pair_moves_trailing_space_and_splits_the_whole(tok):
    ctx, cont = encode_pair(tok, "Question: Where?\nAnswer: ", "Debrecen")
    whole = tok.encode("Question: Where?\nAnswer: Debrecen")
    assert ctx + cont == whole and ctx == tok.encode("Question: Where?\nAnswer:")
    with pytest.raises(ValueError, match="context"):
        encode_pair(tok, "", "x")


def test_choice_metrics_normalise_by_characters():
    # raw: choice 1 wins; per character: choice 0 (-6/12 = -0.5 > -4/2 = -2)
    assert choice_metrics([-6.0, -4.0], ["twelve chars", "ab"], 0) == {"pred": 1, "pred_norm": 0, "acc": 0.0,
                                                                      "acc_norm": 1.0}


def test_qa_loglik_equals_a_full_sequence_forward(model, tok):
    pairs = [{"id": "a", "article_id": "T1", "question": "Where is the iX3 built?", "answer": "In Debrecen."},
             {"id": "b", "article_id": "T1", "question": "When?", "answer": "From autumn 2025."}]
    total, count = 0.0, 0
    for pair in pairs:
        ctx, cont = encode_pair(tok, render_prompt(tok, pair["question"], SYSTEM, False), pair["answer"])
        with torch.no_grad():
            lp = model(torch.tensor([ctx + cont])).logits[0].log_softmax(-1)
        total += sum(lp[len(ctx) + i - 1, t].item() for i, t in enumerate(cont))
        count += len(cont)
    got = qa_loglik(model, tok, pairs, system=SYSTEM, batch_size=1)
    assert got["n"] == 2 and got["tokens"] == count
    assert got["mean"] == pytest.approx(total / count, rel=1e-5)


def test_mcqa_summary_and_bad_items(model, tok):
    items = [json.loads(line) | {"article_id": "T0", "type": "place" if i % 2 else "figure"}
             for i, line in enumerate((LM_EVAL_TASKS / "bmw_local_mc.jsonl").read_text().splitlines())]
    summary, rows = evaluate_mcqa(model, tok, items, system=SYSTEM, batch_size=8)
    assert summary["n"] == 12 and set(summary["by_type"]) == {"figure", "place"}
    assert sum(t["n"] for t in summary["by_type"].values()) == 12
    assert summary["acc"] == pytest.approx(sum(r["acc"] for r in rows) / 12)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert all(len(r["logliks"]) == 4 and r["pred"] == max(range(4), key=lambda i: r["logliks"][i]) for r in rows)
    with pytest.raises(ValueError, match="'q01'.*answer"):
        evaluate_mcqa(model, tok, [items[0] | {"answer": 4}], system=SYSTEM)
    with pytest.raises(ValueError, match="choices"):
        evaluate_mcqa(model, tok, [items[0] | {"choices": ["only one"]}], system=SYSTEM)


@pytest.mark.slow
def test_multiple_choice_equals_lm_evaluation_harness(model, tok, monkeypatch):
    from bmw.eval.lm_eval_tasks import run_tasks, task_metrics

    monkeypatch.chdir(LM_EVAL_TASKS)  # the task's data_files path is relative to the working directory
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows_per_call: list[int] = []
    count = model.register_forward_pre_hook(
        lambda m, args, kwargs: rows_per_call.append((args[0] if args else kwargs["input_ids"]).shape[0]),
        with_kwargs=True)
    try:
        results = run_tasks(model, tok, ["bmw_local_mc"], batch_size=4, include_path=LM_EVAL_TASKS,
                            log_samples=True)
    finally:
        count.remove()
    # the batch size reaches the model: given to simple_evaluate instead of HFLM it is ignored for an in-memory
    # model, which then scores one request per forward
    assert max(rows_per_call) == 4
    harness = task_metrics(results)["bmw_local_mc"]
    docs = read_jsonl(LM_EVAL_TASKS / "bmw_local_mc.jsonl")
    # the task's prompt: doc_to_text, target_delimiter " ", each choice as the continuation
    requests = [(f"Question: {d['question']}\nAnswer:", f" {c}") for d in docs for c in d["choices"]]
    scores = iter(loglikelihoods(model, tok, requests, batch_size=3))
    ours = []
    for d in docs:
        ours.append((d, [next(scores)[0] for _ in d["choices"]]))
    samples = sorted(results["samples"]["bmw_local_mc"], key=lambda s: s["doc_id"])
    for (doc, logliks), sample in zip(ours, samples):
        assert sample["doc"]["id"] == doc["id"]
        assert logliks == pytest.approx([r[0][0] for r in sample["resps"]], abs=1e-3)
        mine = choice_metrics(logliks, doc["choices"], doc["answer"])
        assert (mine["acc"], mine["acc_norm"]) == (sample["acc"], sample["acc_norm"])
    rows = [choice_metrics(lls, d["choices"], d["answer"]) for d, lls in ours]
    assert harness["acc"] == pytest.approx(sum(r["acc"] for r in rows) / len(rows))
    assert harness["acc_norm"] == pytest.approx(sum(r["acc_norm"] for r in rows) / len(rows))


# --- a whole evaluation -------------------------------------------------------------------------------------------


def write_processed(data_dir: Path) -> None:
    write_jsonl(data_dir / "test.jsonl", [{"id": f"T0{i}EN", "style": "instruct", "messages": conversation(i)}
                                          for i in range(3)])
    write_jsonl(data_dir / "prompts.jsonl", [{"id": f"T0{i}EN", "title": f"Release {i}",
                                              "prompt": f"Tell me about: release {i}"} for i in range(2)])
    write_jsonl(data_dir / "mcqa.jsonl", [
        {"id": "m1", "article_id": "T00EN", "type": "figure", "question": "The BMW Group delivered ____ vehicles.",
         "choices": ["1.2 million", "2.45 million", "3 million"], "answer": 1},
        {"id": "m2", "article_id": "T01EN", "type": "place", "question": "The iX3 is built in ____.",
         "choices": ["Debrecen", "Oxford", "Leipzig"], "answer": 0},
        {"id": "m3", "article_id": "T02EN", "type": "figure", "question": "The MINI Cooper E has a range of ____.",
         "choices": ["402 km", "305 km", "50 km"], "answer": 1},
    ])
    write_jsonl(data_dir / "mcqa_knowledge.jsonl", [
        {"id": "k1", "article_id": "T09EN", "type": "place", "question": "The MINI is built in ____.",
         "choices": ["Oxford", "Munich"], "answer": 0},
    ])
    write_jsonl(data_dir / "qa_reference.jsonl", [
        {"id": "q1", "article_id": "T01EN", "question": "Where is the iX3 built?", "answer": "In Debrecen, Hungary."},
    ])


EVAL = {"window": 32, "stride": 16, "se_samples": 2, "se_prompts": 2, "max_new_tokens": 4, "batch_size": 4}


def check_outputs(metrics_dir: Path, metrics: dict) -> None:
    assert json.loads((metrics_dir / "details.json").read_text()) == metrics
    # the DVC metrics: headline figures only, in this order, and no wall-clock time (that is in run.json)
    headline = json.loads((metrics_dir / "metrics.json").read_text())
    assert list(headline.items()) == [
        ("perplexity", metrics["perplexity"]["ppl"]), ("mcqa_knowledge_acc", metrics["mcqa_knowledge"]["acc"]),
        ("mcqa_heldout_acc", metrics["mcqa"]["acc"]), ("semantic_entropy", metrics["semantic_entropy"]["discrete"]),
        ("qa_token_f1", metrics["qa_generation"]["token_f1"])]
    assert json.loads((metrics_dir / "run.json").read_text())["eval_time_s"] > 0
    for key in ("perplexity", "perplexity_assistant"):
        assert set(metrics[key]) == {"ppl", "nll", "tokens", "bits_per_byte"}
    assert metrics["perplexity"]["tokens"] > metrics["perplexity_assistant"]["tokens"] > 0
    assert isinstance(metrics["test_loss"], float)
    assert metrics["semantic_entropy"] | {"discrete": 0, "weighted": 0} == {
        "discrete": 0, "weighted": 0, "clustering": "embedding", "prompts": 2, "samples": 2}
    assert set(metrics["mcqa"]) == {"acc", "acc_norm", "n", "by_type"} and metrics["mcqa"]["n"] == 3
    assert metrics["mcqa"]["by_type"]["figure"]["n"] == 2 and set(metrics["mcqa"]["by_type"]["place"]) == {
        "acc", "acc_norm", "n"}
    assert metrics["qa_loglik"]["n"] == 1 and metrics["qa_loglik"]["mean"] < 0
    (answer,) = read_jsonl(metrics_dir / "qa_answers.jsonl")
    assert (answer["id"], answer["reference"]) == ("q1", "In Debrecen, Hungary.")
    assert metrics["qa_generation"] == {"token_f1": answer["token_f1"], "n": 1}
    assert answer["token_f1"] == pytest.approx(token_f1(answer["answer"], "In Debrecen, Hungary."))
    generations = read_jsonl(metrics_dir / "generations.jsonl")
    assert [g["id"] for g in generations] == ["T00EN", "T01EN"]
    assert all({"text", "thinking", "answer", "prompt", "tokens"} <= set(g) for g in generations)
    assert [len(r["samples"]) for r in read_jsonl(metrics_dir / "semantic_entropy.jsonl")] == [2, 2]
    assert metrics["mcqa_knowledge"]["n"] == 1
    assert [(r["set"], r["id"]) for r in read_jsonl(metrics_dir / "mcqa_items.jsonl")] == [
        ("heldout", "m1"), ("heldout", "m2"), ("heldout", "m3"), ("knowledge", "k1")]
    assert not (metrics_dir / "dvc.yaml").exists()


@pytest.mark.slow
def test_unknown_variant_is_named(tmp_path):
    with pytest.raises(ParamsError, match="variants.nosuch: no such variant; defined: baseline"):
        evaluate_variant("nosuch", parse_params({}), tmp_path, tmp_path, tmp_path)


@pytest.mark.slow
def test_evaluate_model_writes_the_promised_metrics(model, tok, tmp_path, monkeypatch):
    write_processed(tmp_path / "data")
    params = parse_params({"eval": EVAL | {"lm_eval_tasks": ["bmw_local_mc"], "lm_eval_include": str(LM_EVAL_TASKS)}})
    monkeypatch.chdir(LM_EVAL_TASKS)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    metrics = evaluate_model(model, tok, params, tmp_path / "data", tmp_path / "metrics")
    check_outputs(tmp_path / "metrics", metrics)
    assert set(metrics["lm_eval"]["bmw_local_mc"]) >= {"acc", "acc_norm"}


@pytest.mark.slow
def test_eval_stage_on_a_saved_variant(model, tok, tmp_path):
    from bmw.models.variant import save_variant

    write_processed(tmp_path / "data" / "processed")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"eval": EVAL, "variants": {"baseline": {"method": "none"}}}))
    save_variant(tmp_path / "models" / "variants" / "baseline", model, tok,
                 {"name": "baseline", "method": "none", "type": "pruned", "layers": 4,
                  "base": {"path": "models/base", "dtype": "float32"}},
                 {"type": "pruned", "operations": [{"op": "keep", "layers": [0, 1, 2, 3]}]})
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "stages.eval", "baseline"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "eval [5/6] qa log-likelihood" in run.stderr and "eval [6/6] qa answers" in run.stderr
    metrics_dir = tmp_path / "metrics" / "eval" / "baseline"
    check_outputs(metrics_dir, json.loads((metrics_dir / "details.json").read_text()))


# --- thinking modes ----------------------------------------------------------------------------------------------

TRACE, ANSWER = "Debrecen plant", "In Debrecen."


@pytest.fixture
def scripted(model, tok, monkeypatch):
    """The model made to write `<think>TRACE</think>ANSWER` where the prompt leaves thinking on and ANSWER after the
    template's empty think block (the decoder replaced): a random model's own words would carry no trace to split off."""
    empty = empty_think_ids(tok)
    scripts = {mode: tok.encode(text + "<|im_end|>", add_special_tokens=False) for mode, text in
               ((True, f"<think>\n{TRACE}\n</think>\n\n{ANSWER}"), (False, ANSWER))}

    def scripted_decode(model, input_ids, attention_mask, *, max_new_tokens, pad_id, **_):
        rows = [scripts[ids[-len(empty):].tolist() != empty][:max_new_tokens] for ids in input_ids]
        tokens = torch.tensor([row + [pad_id] * (max_new_tokens - len(row)) for row in rows])
        ends = torch.tensor([row[-1] == tok.convert_tokens_to_ids("<|im_end|>") for row in rows])
        return Decoded(tokens, torch.zeros(tokens.shape), ends)

    monkeypatch.setattr(generation, "decode", scripted_decode)
    return model


def test_both_thinking_modes_are_measured_and_their_traces_kept_apart(scripted, tok, tmp_path):
    write_processed(tmp_path / "data")
    params = parse_params({"eval": EVAL | {"max_new_tokens": 16, "enable_thinking": [False, True]}})
    metrics = evaluate_model(scripted, tok, params, tmp_path / "data", tmp_path / "metrics")
    assert metrics["thinking_modes"] == ["non_thinking", "thinking"]
    headline = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert list(headline)[-4:] == ["semantic_entropy", "qa_token_f1", "semantic_entropy_thinking",
                                   "qa_token_f1_thinking"]
    assert headline["semantic_entropy_thinking"] == metrics["semantic_entropy_thinking"]["discrete"] == 0.0
    # the answer alone is scored: the same answer scores the same with a trace before it as without
    assert headline["qa_token_f1_thinking"] == headline["qa_token_f1"] == pytest.approx(token_f1(ANSWER, "In Debrecen, Hungary."))
    for name, items in (("generations", 2), ("qa_answers", 1)):
        rows = read_jsonl(tmp_path / "metrics" / f"{name}.jsonl")
        assert [(r["mode"], r["thinking"], r["answer"]) for r in rows] == [
            ("non_thinking", "", ANSWER), ("thinking", TRACE, ANSWER)] * items
    rows = read_jsonl(tmp_path / "metrics" / "semantic_entropy.jsonl")
    assert [r["mode"] for r in rows] == ["non_thinking", "thinking"] * 2
    assert {(r["mode"], s["thinking"], s["answer"]) for r in rows for s in r["samples"]} == {
        ("non_thinking", "", ANSWER), ("thinking", TRACE, ANSWER)}


def test_a_template_without_the_thinking_switch_is_measured_once(model, tok, tmp_path, caplog):
    smollm2 = copy.deepcopy(tok)
    smollm2.chat_template = (ROOT / "bmw" / "base" / "smollm2_chatml.jinja").read_text(encoding="utf-8")
    write_processed(tmp_path / "data")
    params = parse_params({"eval": EVAL | {"enable_thinking": [False, True]}})
    with caplog.at_level(logging.INFO, logger="bmw.eval.generation"):
        metrics = evaluate_model(model, smollm2, params, tmp_path / "data", tmp_path / "metrics")
    assert "the chat template has no thinking switch; thinking mode skipped" in caplog.text
    assert metrics["thinking_modes"] == ["non_thinking"]
    check_outputs(tmp_path / "metrics", metrics)  # today's keys and files, nothing twice
    assert {r["mode"] for r in read_jsonl(tmp_path / "metrics" / "generations.jsonl")} == {"non_thinking"}
