"""Named lm-evaluation-harness tasks (hellaswag, piqa, boolq, mmlu, ... or local task YAMLs) on the in-memory model.

The harness fetches its task datasets from the Hugging Face Hub; on an offline machine only local tasks (a task
YAML over a local JSON/JSONL file, found through `include_path`) can run.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)


@functools.cache
def task_manager(tasks: tuple[str, ...], include_path: str | None = None):
    """The harness's task registry holding `tasks`; ValueError naming eval.lm_eval_tasks for a task it does not
    know. The eval stage asks before it loads a model (a typo must not cost a model load and a whole evaluation)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if manager is None or not set(tasks) <= set(manager.all_tasks):
        # indexing the harness's own task folders takes tens of seconds: only when a task is not local
        log.info("lm-eval: indexing the harness's tasks")
        manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"eval.lm_eval_tasks: unknown lm-evaluation-harness task(s): {', '.join(unknown)}")
    return manager


def run_tasks(
    model,
    tokenizer,
    tasks: list[str],
    *,
    batch_size: int = 8,
    seed: int = 42,
    include_path: str | Path | None = None,
    limit: int | None = None,
    log_samples: bool = False,
) -> dict:
    """The harness's `simple_evaluate` output for `tasks`, zero-shot, without a chat template."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    manager = task_manager(tuple(tasks), str(include_path) if include_path else None)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=0,  # the stderr bootstrap is slow and its value random: report point estimates
    )


def task_metrics(results: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} from a `simple_evaluate` output; `acc,none` -> `acc`, other filters kept as suffix."""
    metrics: dict[str, dict[str, float]] = {}
    for task, values in sorted(results["results"].items()):
        row = {}
        for key, value in values.items():
            name, _, filt = key.partition(",")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and filt:
                row[name if filt == "none" else f"{name}_{filt}"] = float(value)
        metrics[task] = row
    return metrics
