"""All measurements of one variant, in `metrics/eval/<variant>/`:

- `metrics.json`: the headline figures, the DVC metrics that `dvc exp show` and `dvc metrics diff` compare;
- `details.json`: every figure (perplexity of the assistant turns, MCQA by question type, ...), for the report;
- `run.json`: how long each part took (wall clock: not a metric, not in git);
- `generations.jsonl`, `semantic_entropy.jsonl`, `mcqa_items.jsonl`, `qa_answers.jsonl`: per-item results.

The generative parts (generations, semantic entropy, QA answers) run once per thinking mode of `eval.enable_thinking`
the template has: the first mode's figures under the plain keys, another's under keys carrying its name
(`semantic_entropy_thinking`); each per-item row names its mode and keeps the thinking apart from the answer, which
alone is scored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from bmw.eval.generation import generate, render_prompt, thinking_modes
from bmw.eval.lm_eval_tasks import run_tasks, task_metrics
from bmw.eval.multiple_choice import evaluate_mcqa, qa_loglik
from bmw.eval.qa_generation import qa_generation
from bmw.eval.perplexity import evaluate_perplexity
from bmw.eval.semantic_entropy import make_clusterer, semantic_entropy
from bmw.io import read_jsonl, write_json, write_jsonl
from bmw.models.base import compute_dtype
from bmw.models.thinking import MODES, mode_name
from bmw.models.variant import load_variant
from bmw.params import Params

log = logging.getLogger(__name__)

INPUTS = ("test.jsonl", "prompts.jsonl", "mcqa.jsonl", "mcqa_knowledge.jsonl", "qa_reference.jsonl")


def read_inputs(data_dir: Path) -> dict[str, list[dict]]:
    missing = [name for name in INPUTS if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir}: missing {', '.join(missing)}; run the format stage first")
    data = {name.removesuffix(".jsonl"): read_jsonl(data_dir / name) for name in INPUTS}
    for row in data["test"]:
        if not isinstance(row.get("messages"), list) or not row["messages"]:
            raise ValueError(f"{data_dir / 'test.jsonl'}: row {row.get('id')!r} has no 'messages' list")
    return data


def headline(details: dict) -> dict:
    """The figures a comparison starts from, in this order (the knowledge set only where format built one)."""
    figures = {
        "perplexity": details["perplexity"]["ppl"],
        "mcqa_knowledge_acc": details.get("mcqa_knowledge", {}).get("acc"),
        "mcqa_heldout_acc": details["mcqa"]["acc"],
        "semantic_entropy": details["semantic_entropy"]["discrete"],
        "qa_token_f1": details.get("qa_generation", {}).get("token_f1"),
    }
    for mode in MODES:  # a second mode's keys carry its name
        figures[f"semantic_entropy_{mode}"] = details.get(f"semantic_entropy_{mode}", {}).get("discrete")
        figures[f"qa_token_f1_{mode}"] = details.get(f"qa_generation_{mode}", {}).get("token_f1")
    return {name: value for name, value in figures.items() if value is not None}


def evaluate_model(model, tokenizer, params: Params, data_dir: Path, metrics_dir: Path) -> dict:
    """Run every measurement on a loaded model; write the files listed above into `metrics_dir`; return the
    details."""
    started = time.perf_counter()
    data_dir, metrics_dir = Path(data_dir), Path(metrics_dir)
    p, system = params.eval, params.format.system_prompt or None
    data = read_inputs(data_dir)
    conversations = [row["messages"] for row in data["test"]]
    modes = thinking_modes(tokenizer, p.thinking_modes)

    def label(part: str, thinking: bool) -> str:
        return part if len(modes) == 1 else f"{part} ({mode_name(thinking)})"

    def key(name: str, thinking: bool) -> str:
        return name if thinking == modes[0] else f"{name}_{mode_name(thinking)}"

    def each_mode(part: str) -> list[str]:
        return [label(part, thinking) for thinking in modes]

    parts = ["perplexity", *each_mode("generation"), *each_mode("semantic entropy"), "multiple choice",
             "qa log-likelihood", *each_mode("qa answers")]
    parts += ["lm-eval"] if p.lm_eval_tasks else []
    step = iter(range(1, len(parts) + 1))
    began: dict[str, float] = {}  # part -> start time

    def progress(part: str) -> None:
        began[part] = time.perf_counter()
        log.info("eval [%d/%d] %s (%.1fs so far)", next(step), len(parts), part, began[part] - started)

    metrics: dict = {"thinking_modes": [mode_name(thinking) for thinking in modes]}
    progress("perplexity")
    metrics.update(evaluate_perplexity(
        model, tokenizer, conversations, p.window, p.stride, p.batch_size,
        loss_max_length=params.train.max_length, loss_assistant_only=params.train.assistant_only_loss,
        loss_mask_empty_think=params.train.mask_empty_think,
    ))

    prompts, generated = data["prompts"], []
    for thinking in modes:
        progress(label("generation", thinking))
        rendered = [render_prompt(tokenizer, row["prompt"], system, thinking) for row in prompts]
        generated += [
            {"id": row["id"], "mode": mode_name(thinking), "title": row.get("title"), "prompt": row["prompt"],
             "text": g.text, "thinking": g.thinking, "answer": g.answer, "tokens": len(g.token_ids),
             "finished": g.finished}
            for row, (g,) in zip(prompts, generate(model, tokenizer, rendered, p, seed=params.seed))
        ]
    write_jsonl(metrics_dir / "generations.jsonl", generated, sort_key=("id", "mode"))

    clusterer, se_rows = None, []
    for thinking in modes:
        progress(label("semantic entropy", thinking))
        clusterer = clusterer or make_clusterer(p)  # loaded once, for every mode
        metrics[key("semantic_entropy", thinking)], rows = semantic_entropy(
            model, tokenizer, prompts, p, seed=params.seed, system=system, clusterer=clusterer,
            enable_thinking=thinking)
        se_rows += rows
    write_jsonl(metrics_dir / "semantic_entropy.jsonl", se_rows, sort_key=("id", "mode"))

    progress("multiple choice")
    metrics["mcqa"], heldout = evaluate_mcqa(model, tokenizer, data["mcqa"], system=system, batch_size=p.batch_size)
    knowledge: list[dict] = []
    if data["mcqa_knowledge"]:
        metrics["mcqa_knowledge"], knowledge = evaluate_mcqa(model, tokenizer, data["mcqa_knowledge"], system=system,
                                                             batch_size=p.batch_size)
    write_jsonl(metrics_dir / "mcqa_items.jsonl", [{**r, "set": "heldout"} for r in heldout]
                + [{**r, "set": "knowledge"} for r in knowledge], sort_key=("set", "id"))

    progress("qa log-likelihood")
    metrics["qa_loglik"] = qa_loglik(model, tokenizer, data["qa_reference"], system=system, batch_size=p.batch_size)

    qa_rows = []
    for thinking in modes:
        progress(label("qa answers", thinking))
        metrics[key("qa_generation", thinking)], rows = qa_generation(
            model, tokenizer, data["qa_reference"], p, system, params.seed, enable_thinking=thinking)
        qa_rows += rows
    write_jsonl(metrics_dir / "qa_answers.jsonl", qa_rows, sort_key=("id", "mode"))

    if p.lm_eval_tasks:
        progress("lm-eval")
        results = run_tasks(model, tokenizer, p.lm_eval_tasks, batch_size=p.batch_size, seed=params.seed,
                            include_path=Path(p.lm_eval_include) if p.lm_eval_include else None)
        metrics["lm_eval"] = task_metrics(results)

    ended = time.perf_counter()
    marks = [*began.values(), ended]
    write_json(metrics_dir / "run.json", {"eval_time_s": round(ended - started, 2),
                                          "parts_s": {part: round(b - a, 2) for part, a, b in
                                                      zip(began, marks, marks[1:])}})
    write_json(metrics_dir / "details.json", metrics)
    write_json(metrics_dir / "metrics.json", headline(metrics), sort_keys=False)
    log.info("eval done in %.1fs: ppl %.3f, mcqa acc %.3f", ended - started, metrics["perplexity"]["ppl"],
             metrics["mcqa"]["acc"])
    return metrics


def evaluate_variant(name: str, params: Params, model_dir: Path, data_dir: Path, metrics_dir: Path) -> dict:
    """Load the trained variant `name` from `model_dir` (LoRA merged) and evaluate it."""
    params.variant(name)  # an unknown variant fails here, naming the defined ones
    log.info("eval@%s: loading %s", name, model_dir)
    model, tokenizer = load_variant(Path(model_dir), merge=True)
    if torch.cuda.is_available():
        model.to("cuda")  # generation compiles its decoding step there (bmw.eval.decode)
    # bfloat16 matmuls over float32 weights where the device computes them natively (base.compute): on SmolLM2's
    # test split the perplexity moves by 4e-5 (22.6367 -> 22.6359) and the evaluation runs 1.8x faster on a CPU
    mixed = compute_dtype(params.base.dtype, params.base.compute) == "bfloat16" and model.dtype == torch.float32
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=mixed):
        return evaluate_model(model, tokenizer, params, data_dir, metrics_dir)
