"""The report reads real metric files as train/eval write them and renders tables, PNGs and a model card."""

import json
from pathlib import Path

import torch

from bmw.io import write_json, write_jsonl
from bmw.params import parse_params
from bmw.report.collect import collect
from bmw.report.render import make_plots, model_card, report_markdown
from bmw.report.tables import generations_table, training_table, variant_table


def _write_variant(root: Path, name: str, type_: str, method: str, ppl: float, per_epoch: float | None):
    train = root / "train" / name
    write_json(train / "metrics.json", {"best_eval_loss": 2.5})
    write_json(train / "run.json", {
        "trained": method != "none", "method": method, "type": type_, "layers": 36 if type_ == "original" else 24,
        "total_params": 1_500_000, "trainable_params": 0 if method == "none" else 90_000,
        "time_per_epoch_s": per_epoch, "epochs_run": 3, "tokens_per_second": 1000.0, "best_step": 20, "final_train_loss": 2.4})
    if method != "none":
        curves = train / "plots" / "metrics"
        (curves / "eval").mkdir(parents=True)
        (curves / "loss.tsv").write_text("step\tloss\n10\t3.0\n20\t2.5\n")
        (curves / "eval" / "loss.tsv").write_text("step\tloss\n10\t3.1\n20\t2.6\n")
    ev = root / "eval" / name
    write_json(ev / "details.json", {
        "perplexity": {"ppl": ppl, "bits_per_byte": 1.5}, "test_loss": 2.0,
        "semantic_entropy": {"discrete": 0.5, "weighted": 0.4, "clustering": "embedding:all-MiniLM-L6-v2"},
        "mcqa": {"acc": 0.5, "acc_norm": 0.25, "n": 4, "by_type": {"date": {"acc": 0.5, "acc_norm": 0.5, "n": 2}}},
        "qa_loglik": {"mean": -2.0, "n": 3}})
    write_jsonl(ev / "generations.jsonl", [{"id": "p1", "prompt": "Tell me about: X | Y", "answer": f"{name} says"}])


def test_report_from_metric_files(tmp_path):
    metrics = tmp_path / "metrics"
    _write_variant(metrics, "baseline", "pruned", "none", 90.0, None)
    _write_variant(metrics, "full", "original", "full", 10.0, 20.0)
    _write_variant(metrics, "lora_pruned", "pruned", "full", 12.0, 10.0)
    params = parse_params({"variants": {"baseline": {"method": "none"}, "full": {"method": "full"},
                                        "lora_pruned": {"method": "full", "type": "pruned"}}})
    results = collect(["baseline", "full", "lora_pruned"], metrics)
    assert results[1].train_curve == [(10, 3.0), (20, 2.5)] and results[0].train_curve == []

    table = variant_table(results)
    assert "| full | original | full | 36 | **10.00** |" in table
    assert "**0.500**" not in table  # a tie (every variant's semantic entropy is 0.5) is nobody's best
    # Speed-up against the same method on the original architecture: 20 s / 10 s.
    assert "2.00x" in training_table(results)

    figures = make_plots(results, tmp_path / "plots")
    assert set(figures) == {"loss", "bars", "mcqa"}
    first = {k: p.read_bytes() for k, p in figures.items()}
    assert make_plots(results, tmp_path / "plots") and {k: p.read_bytes() for k, p in figures.items()} == first

    report_dir = tmp_path / "reports"
    laco = {"type": "laco", "layers_before": 36, "layers_after": 36, "operations": [],
            "sources": [[i] for i in range(36)],
            "trials": [{"start": 25, "original_layers": [25, 26, 27], "similarity": 0.41, "accepted": False}]}
    pruned = {"type": "pruned", "layers_before": 36, "layers_after": 24, "sources": [[i] for i in range(24)],
              "operations": [{"op": "keep", "layers": list(range(24))}]}
    replaceme = {"type": "replaceme", "layers_before": 36, "layers_after": 33,
                 "sources": [[i] for i in range(20)] + [[20, 21, 22, 23]] + [[i] for i in range(24, 36)],
                 "operations": [{"op": "linear", "start": 21, "count": 3, "transform": torch.eye(4)}]}
    text = report_markdown(results, params, figures, report_dir, {"train": {"rows": 80}},
                           {"laco": laco, "pruned": pruned, "replaceme": replaceme})
    assert "| replaceme | 36 -> 33 | - | - | 21..23 into layer 20 |" in text
    assert "random weights" in text  # base.name tiny
    # the cost of the pruned type against the original one of the same method: 12 / 10 perplexity
    assert "| lora_pruned | pruned | full | 36 -> 24 | full | 12.00 (+20.0%) |" in text
    assert "| pruned | 36 -> 24 | 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35 | - |" in text
    assert "Every merge was rejected" in text and "| 25 | 25, 26, 27 | 0.4100 | rejected |" in text
    assert "![Loss curves](../plots/loss_curves.png)" in text
    assert "Tell me about: X \\| Y" in text and "lora_pruned says" in text
    assert "embedding:all-MiniLM-L6-v2" in text
    card = model_card(results, params)
    assert card.startswith("---\n") and "value: 10.0000" in card and "Best test perplexity: **full**" in card
    json.dumps(text)  # plain text, no objects leaked in


def test_a_second_thinking_mode_gets_columns_and_generation_rows_of_its_own(tmp_path):
    metrics = tmp_path / "metrics"
    _write_variant(metrics, "baseline", "original", "none", 90.0, None)
    _write_variant(metrics, "lora", "original", "lora", 10.0, 20.0)
    details = metrics / "eval" / "lora" / "details.json"
    write_json(details, json.loads(details.read_text()) | {
        "semantic_entropy_thinking": {"discrete": 0.25, "weighted": 0.2}, "qa_generation_thinking": {"token_f1": 0.75}})
    write_jsonl(metrics / "eval" / "lora" / "generations.jsonl", [
        {"id": "p1", "mode": "non_thinking", "prompt": "Tell me about: X | Y", "answer": "lora says"},
        {"id": "p1", "mode": "thinking", "prompt": "Tell me about: X | Y", "answer": "lora thought",
         "thinking": "hmm"}])
    results = collect(["baseline", "lora"], metrics)
    table = variant_table(results).splitlines()
    assert table[0].endswith("| Semantic entropy (thinking) ↓ | QA answer F1 (thinking) ↑ |")
    assert table[2].endswith("| - | - |") and table[3].endswith("| **0.250** | **0.750** |")
    assert "(non-thinking)" not in table[0]  # no variant has that column
    generations = generations_table(results)
    assert "| Tell me about: X \\| Y (non-thinking) | baseline says | lora says |" in generations
    assert "| Tell me about: X \\| Y (thinking) | - | lora thought |" in generations
    assert "hmm" not in generations  # the answers side by side, not the traces
