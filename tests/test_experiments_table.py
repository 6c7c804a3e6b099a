"""The cross-type table reads `dvc exp show --json` as DVC 3 writes it (captured from a real run)."""

import json

from bmw.report.experiments import cross_type_rows, cross_type_table


def _data(type_: str, ppl_lora: float, ppl_full: float) -> dict:
    return {
        "params": {"params.yaml": {"data": {"model": {"type": type_},
                                            "variants": {"full": {"method": "full"}, "lora": {"method": "lora"},
                                                         "dropped_lora": {"method": "lora", "type": "dropped"}}}}},
        "metrics": {
            "metrics/eval/full/metrics.json": {"data": {"perplexity": ppl_full}},
            "metrics/eval/lora/metrics.json": {"data": {"perplexity": ppl_lora, "mcqa_heldout_acc": 0.25,
                                                        "semantic_entropy": 0.5, "qa_token_f1": 0.31}},
        },
    }


EXP_SHOW = [
    {"rev": "workspace", "name": None, "data": _data("pruned", 1.0, 1.0), "experiments": None},
    {"rev": "4a24c4f" + "0" * 33, "name": "main", "data": _data("original", 11.4, 5.59), "experiments": [
        {"name": "skint-weal", "revs": [{"rev": "989e" + "0" * 36, "data": _data("laco", 20.0, 9.0)}]},
        {"name": "loamy-awls", "revs": [{"rev": "7db6" + "0" * 36, "data": _data("pruned", 14.96, 11.6)}]},
        {"name": "older-pruned", "revs": [{"rev": "1111" + "0" * 36, "data": _data("pruned", 99.0, 99.0)}]},
    ]},
]


def test_rows_per_type_and_variant_newest_run_wins():
    rows = cross_type_rows(EXP_SHOW)
    names = [r[0] for r in rows]
    assert names == ["original/full", "original/lora", "dropped/dropped_lora", "pruned/full", "pruned/lora",
                     "laco/full", "laco/lora"]
    assert rows[0] == ["original/full", "main", "5.59", "-", "-", "-", "-"]
    assert rows[4] == ["pruned/lora", "loamy-awls", "14.96", "-", "0.250", "0.500", "0.310"]
    assert "older-pruned" not in cross_type_table(EXP_SHOW)


def test_a_second_thinking_mode_gets_columns_where_an_experiment_has_them():
    assert "thinking" not in cross_type_table(EXP_SHOW)
    exp_show = json.loads(json.dumps(EXP_SHOW))
    exp_show[1]["data"]["metrics"]["metrics/eval/lora/metrics.json"]["data"] |= {
        "semantic_entropy_thinking": 0.75, "qa_token_f1_thinking": 0.125}
    header = cross_type_table(exp_show).splitlines()[0]
    assert header.endswith("| QA answer F1 ↑ | Semantic entropy (thinking) ↓ | QA answer F1 (thinking) ↑ |")
    rows = cross_type_rows(exp_show)
    assert rows[1] == ["original/lora", "main", "11.40", "-", "0.250", "0.500", "0.310", "0.750", "0.125"]
    assert rows[0][-2:] == ["-", "-"]
