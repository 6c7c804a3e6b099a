"""Markdown tables from variant results (pure)."""

from __future__ import annotations

from typing import Sequence

from bmw.models.thinking import MODES, mode_name
from bmw.report.collect import VariantResult


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _best(results: list[VariantResult], path: str, lower: bool) -> str | None:
    """The variant with the best value; None when nothing is scored or the best value is shared (a tie)."""
    scored = [(r.get(path), r.name) for r in results if isinstance(r.get(path), (int, float))]
    if not scored:
        return None
    value, name = (min if lower else max)(scored)
    return name if [v for v, _ in scored].count(value) == 1 else None


Column = tuple[str, str, int, bool | None]  # header, metric path, digits, lower-is-better (None: not ranked)

VARIANT_COLUMNS: list[Column] = [
    ("Test perplexity ↓", "eval.perplexity.ppl", 2, True),
    ("Assistant PPL ↓", "eval.perplexity_assistant.ppl", 2, True),
    ("Bits/byte ↓", "eval.perplexity.bits_per_byte", 3, True),
    ("Test loss ↓", "eval.test_loss", 4, True),
    ("Semantic entropy ↓", "eval.semantic_entropy.discrete", 3, True),
    ("SE weighted ↓", "eval.semantic_entropy.weighted", 3, True),
    ("Knowledge MCQA ↑", "eval.mcqa_knowledge.acc", 3, False),
    ("Held-out MCQA ↑", "eval.mcqa.acc", 3, False),
    ("Held-out acc_norm ↑", "eval.mcqa.acc_norm", 3, False),
    ("QA log-lik ↑", "eval.qa_loglik.mean", 4, False),
    ("QA answer F1 ↑", "eval.qa_generation.token_f1", 3, False),
]
# a second thinking mode's figures (eval.enable_thinking: [false, true]): shown where a variant has them
MODE_COLUMNS: list[Column] = [
    column for mode in MODES for column in (
        (f"Semantic entropy ({mode.replace('_', '-')}) ↓", f"eval.semantic_entropy_{mode}.discrete", 3, True),
        (f"QA answer F1 ({mode.replace('_', '-')}) ↑", f"eval.qa_generation_{mode}.token_f1", 3, False))
]


def _cells(results: list[VariantResult], columns: list[Column]) -> list[list[str]]:
    best = {path: _best(results, path, lower) for _, path, _, lower in columns if lower is not None}
    rows = []
    for r in results:
        row = []
        for _, path, digits, _lower in columns:
            text = fmt(r.get(path), digits)
            row.append(f"**{text}**" if best.get(path) == r.name and text != "-" else text)
        rows.append(row)
    return rows


def _arch(r: VariantResult) -> list[str]:
    return [r.name, fmt(r.train.get("type")), fmt(r.train.get("method")), fmt(r.train.get("layers"))]


def variant_table(results: list[VariantResult]) -> str:
    """The seeds' comparison table: one row per variant, the best value of each column in bold."""
    columns = VARIANT_COLUMNS + [c for c in MODE_COLUMNS if any(r.get(c[1]) is not None for r in results)]
    header = ["Variant", "Type", "Method", "Layers"] + [c[0] for c in columns]
    rows = [_arch(r) + cells for r, cells in zip(results, _cells(results, columns))]
    return markdown_table(header, rows)


def _reference_time(results: list[VariantResult], r: VariantResult) -> float | None:
    """Speed-up is measured against the same method on the original architecture, else the slowest run."""
    same = [x.train.get("time_per_epoch_s") for x in results
            if x.train.get("method") == r.train.get("method") and x.train.get("type") == "original"]
    timed = [x.train.get("time_per_epoch_s") for x in results if x.train.get("time_per_epoch_s")]
    ref = next((t for t in same if t), None)
    return ref or (max(timed) if timed else None)


def training_table(results: list[VariantResult]) -> str:
    header = ["Variant", "Type", "Method", "Layers", "Params", "Trainable", "Epochs", "Time/epoch (s)",
              "Speed-up", "Tokens/s", "Steady tokens/s", "Best val loss", "Best step", "Final train loss"]
    rows = []
    for r in results:
        t = r.train
        per_epoch = t.get("time_per_epoch_s")
        ref = _reference_time(results, r)
        speedup = f"{ref / per_epoch:.2f}x" if per_epoch and ref else "-"
        rows.append(_arch(r) + [fmt(t.get("total_params")), fmt(t.get("trainable_params")), fmt(t.get("epochs_run"), 1),
                                fmt(per_epoch, 1), speedup, fmt(t.get("tokens_per_second"), 0),
                                fmt(t.get("steady_tokens_per_second"), 0),
                                fmt(t.get("best_eval_loss"), 4), fmt(t.get("best_step")),
                                fmt(t.get("final_train_loss"), 4)])
    return markdown_table(header, rows)


def mcqa_by_type_table(results: list[VariantResult]) -> str:
    types = sorted({k for r in results for k in (r.get("eval.mcqa.by_type") or {})})
    header = ["Variant"] + [f"{t} acc / acc_norm (n)" for t in types]
    rows = []
    for r in results:
        by_type = r.get("eval.mcqa.by_type") or {}
        rows.append([r.name] + [
            f"{fmt(by_type[t].get('acc'), 3)} / {fmt(by_type[t].get('acc_norm'), 3)} ({by_type[t].get('n', '-')})"
            if t in by_type else "-" for t in types])
    return markdown_table(header, rows)


def generations_table(results: list[VariantResult], max_chars: int = 280) -> str:
    """Each held-out prompt with every variant's answer beside it, a row per thinking mode where there are two."""
    by_prompt: dict[tuple[str, str], dict[str, str]] = {}
    for r in results:
        for g in r.generations:
            answer = g.get("answer", "")
            short = answer if len(answer) <= max_chars else answer[:max_chars].rstrip() + " ..."
            # files written before eval recorded the mode hold non-thinking answers (the params' default)
            by_prompt.setdefault((g.get("prompt", g.get("id", "")), g.get("mode", mode_name(False))), {})[r.name] = short
    several = len({mode for _, mode in by_prompt}) > 1
    header = ["Prompt"] + [r.name for r in results]
    rows = [[f"{p} ({mode.replace('_', '-')})" if several else p] + [answers.get(r.name, "-") for r in results]
            for (p, mode), answers in by_prompt.items()]
    return markdown_table(header, rows)


def lm_eval_table(results: list[VariantResult]) -> str | None:
    tasks = sorted({(task, metric) for r in results for task, ms in (r.get("eval.lm_eval") or {}).items()
                    for metric in ms})
    if not tasks:
        return None
    header = ["Variant"] + [f"{t} {m}" for t, m in tasks]
    rows = [[r.name] + [fmt((r.get("eval.lm_eval") or {}).get(t, {}).get(m), 4) for t, m in tasks] for r in results]
    return markdown_table(header, rows)


COST_COLUMNS = [("perplexity", "eval.perplexity.ppl", 2), ("knowledge MCQA", "eval.mcqa_knowledge.acc", 3),
                ("held-out MCQA", "eval.mcqa.acc", 3)]


def cost_table(results: list[VariantResult]) -> str | None:
    """What removing layers costs: each variant of a reduced type against the original type's variant of the same
    method (perplexity in percent, accuracies in points). None when the run holds no such pair."""
    originals = {r.train.get("method"): r for r in results if r.train.get("type") == "original"}
    rows = []
    for r in results:
        ref = originals.get(r.train.get("method"))
        if r.train.get("type") in (None, "original") or ref is None:
            continue
        cells = [r.name, fmt(r.train.get("type")), fmt(r.train.get("method")),
                 f"{fmt(ref.train.get('layers'))} -> {fmt(r.train.get('layers'))}", ref.name]
        for _, path, digits in COST_COLUMNS:
            new, old = r.get(path), ref.get(path)
            if not isinstance(new, (int, float)) or not isinstance(old, (int, float)):
                cells.append("-")
            elif path == "eval.perplexity.ppl":
                cells.append(f"{fmt(new, digits)} ({(new / old - 1) * 100:+.1f}%)")
            else:
                cells.append(f"{fmt(new, digits)} ({(new - old) * 100:+.1f} pt)")
        rows.append(cells)
    if not rows:
        return None
    header = ["Variant", "Type", "Method", "Layers", "Against"] + [f"{c[0]} (change)" for c in COST_COLUMNS]
    return markdown_table(header, rows)


def plans_table(plans: dict[str, dict]) -> str:
    """One row per planned type: what it keeps or merges, from its plan file."""
    rows = []
    for model_type, plan in plans.items():
        merged = [s for s in plan.get("sources", []) if len(s) > 1]
        kept = {i for s in plan.get("sources", []) for i in s}
        dropped = sorted(set(range(plan["layers_before"])) - kept)
        linear = [op for op in plan["operations"] if op["op"] == "linear"]
        rows.append([model_type, f"{plan['layers_before']} -> {plan['layers_after']}",
                     ", ".join(map(str, dropped)) or "-",
                     "-" if linear else "; ".join(f"{s[0]}..{s[-1]}" for s in merged) or "-",
                     "; ".join(f"{op['start']}..{op['start'] + op['count'] - 1} into layer {op['start'] - 1}"
                               for op in linear) or "-"])
    return markdown_table(["Type", "Layers", "Removed layers", "Merged layers", "Replaced by a linear map"], rows)


def laco_trials_table(plan: dict) -> str:
    rows = [[str(t["start"]), ", ".join(map(str, t["original_layers"])), fmt(t["similarity"], 4),
             "accepted" if t["accepted"] else "rejected"] for t in plan.get("trials", [])]
    return markdown_table(["Start", "Original layers", "Similarity", "Decision"], rows)
