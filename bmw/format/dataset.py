"""The whole formatted data set built from the filtered documents: rows per split and the held-out eval sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bmw.format.mcqa import mcqa_items
from bmw.format.messages import instruct_prompt, rows_for
from bmw.format.qa import qa_pairs
from bmw.format.split import SPLITS, split_documents
from bmw.io import stable_hash, write_jsonl
from bmw.params import FormatParams

REQUIRED = ("id", "title", "date", "text")


@dataclass(frozen=True)
class FormattedData:
    documents: dict[str, list[dict]]  # split -> documents, sorted by id
    rows: dict[str, list[dict]]  # split -> messages rows, sorted by id
    prompts: list[dict]
    qa_reference: list[dict]
    mcqa: list[dict]  # about the test articles: a control no model can know
    mcqa_knowledge: list[dict]  # about the training articles: what fine-tuning should teach


def check_documents(docs: list[dict]) -> None:
    """Fail on the first document that lacks a field the format stage needs, or repeats an id."""
    seen: set[str] = set()
    for n, doc in enumerate(docs, 1):
        for key in REQUIRED:
            if not isinstance(doc.get(key), str) or not doc[key].strip():
                raise ValueError(f"document {n} ({doc.get('id', 'no id')}): field {key!r} missing or empty")
        if doc["id"] in seen:
            raise ValueError(f"document {n}: duplicate id {doc['id']!r}")
        seen.add(doc["id"])


def eval_prompts(test_docs: list[dict], n: int, seed: int) -> list[dict]:
    """The first n distinct test titles in a seeded order that does not depend on the other articles."""
    prompts: list[dict] = []
    titles: set[str] = set()
    for doc in sorted(test_docs, key=lambda d: (stable_hash(f"prompts:{seed}:{d['id']}"), d["id"])):
        if doc["title"] not in titles and len(prompts) < n:
            titles.add(doc["title"])
            prompts.append({"id": doc["id"], "title": doc["title"], "prompt": instruct_prompt(doc["title"])})
    return prompts


def qa_reference(test_docs: list[dict], n: int, seed: int) -> list[dict]:
    return [
        {"id": f"{doc['id']}/qa{i:02d}", "article_id": doc["id"], "question": p.question, "answer": p.answer}
        for doc in test_docs
        for i, p in enumerate(qa_pairs(doc, n, seed))
    ]


def build(docs: list[dict], fmt: FormatParams, seed: int) -> FormattedData:
    check_documents(docs)
    documents = split_documents(docs, fmt.split, seed)
    test = documents["test"]
    if not test or not documents["train"]:
        counts = ", ".join(f"{k}={len(v)}" for k, v in documents.items())
        raise ValueError(f"format: the split left an empty train or test set ({counts}); add documents or raise "
                         "format.split.test")
    rows = {name: [r for d in documents[name] for r in rows_for(d, fmt, seed)] for name in SPLITS}
    return FormattedData(
        documents=documents,
        rows={name: sorted(r, key=lambda row: row["id"]) for name, r in rows.items()},
        prompts=eval_prompts(test, fmt.eval_prompts, seed),
        qa_reference=qa_reference(test, fmt.qa_per_article, seed),
        mcqa=mcqa_items(test, docs, fmt.mcqa_per_article, fmt.mcqa_choices, seed),
        mcqa_knowledge=mcqa_items(documents["train"], docs, fmt.mcqa_knowledge_per_article, fmt.mcqa_choices, seed),
    )


def write(data: FormattedData, out_dir: str | Path) -> None:
    out = Path(out_dir)
    for name in SPLITS:
        write_jsonl(out / f"{name}.jsonl", data.rows[name], sort_key="id")
    write_jsonl(out / "prompts.jsonl", data.prompts)  # in their seeded order: the first n are the eval prompts
    write_jsonl(out / "qa_reference.jsonl", data.qa_reference, sort_key="id")
    write_jsonl(out / "mcqa.jsonl", data.mcqa, sort_key="id")
    write_jsonl(out / "mcqa_knowledge.jsonl", data.mcqa_knowledge, sort_key="id")
