"""The format stage on the mirror's real release texts: ChatML rows, a stable split, grounded QA, multiple choice,
stats, the histogram and the card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from bmw.base.materialise import materialise_base
from bmw.format import dataset
from bmw.format.card import render_card
from bmw.format.facts import FACT_TYPES, extract_facts, normalise, sentences
from bmw.format.messages import ROLES
from bmw.format.qa import qa_pairs
from bmw.format.select import usable
from bmw.format.split import SPLITS, assign_split, split_documents
from bmw.format.stats import dataset_stats, histogram_png, metrics, token_counts
from bmw.io import read_jsonl, write_jsonl
from bmw.params import BaseModelParams, FormatParams, SplitParams
from mirror.content import mirror_articles

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
# A larger test share than the default so the held-out sets of 115 releases hold every fact type.
FMT = FormatParams(style="both", split=SplitParams(validation=0.1, test=0.3))


def _doc(article) -> dict:
    return {"id": article.id, "path": article.path, "title": article.title, "date": article.date.isoformat(),
            "language": article.language, "source": "pdf", "text": "\n\n".join(article.paragraphs),
            "stats": {"chars_in": 2 * len(" ".join(article.paragraphs)), "chars_out": len(" ".join(article.paragraphs)),
                      "removed_share": 0.5, "rules": {"running_header": 3}, "pages": 1},
            "filter": {"status": "not_filtered", "reason": None}}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return [_doc(a) for a in mirror_articles() if a.language == "en"]


@pytest.fixture(scope="module")
def data(docs) -> dataset.FormattedData:
    return dataset.build(docs, FMT, SEED)


@pytest.fixture(scope="module")
def by_id(docs) -> dict[str, dict]:
    return {d["id"]: d for d in docs}


@pytest.fixture(scope="module")
def tokenizer(docs) -> PreTrainedTokenizerFast:
    """A small byte-level BPE trained here on the release texts: a real tokenizer, built offline."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([d["text"] for d in docs], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


# --- facts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sentence, kind, group, value",
    [
        ("The car will be shown on 14 March 2025 in Munich.", "date", "day", "14 March 2025"),
        ("Deliveries start in March 2026 in most markets.", "date", "month", "March 2026"),
        ("By 2030 half of all sales will be electric.", "date", "year", "2030"),
        ("Sales rose by 4.2 per cent in the period.", "figure", "percent", "4.2 per cent"),
        ("The company invested EUR 2.5 billion in the site.", "figure", "money billion", "EUR 2.5 billion"),
        ("The battery holds 108.7 kWh and charges at 400 kW.", "figure", "kWh", "108.7 kWh"),
        ("It covers up to 620 kilometres on one charge.", "figure", "distance", "620 kilometres"),
        ("The plant built 1,234,567 vehicles last year.", "figure", "units", "1,234,567 vehicles"),
        ("The new BMW iX3 xDrive50 is built in Debrecen.", "model", "BMW", "BMW iX3 xDrive50"),
        ("The BMW R 1300 GS is built in Berlin-Spandau.", "model", "BMW", "BMW R 1300 GS"),
        ("Customers can order the MINI Cooper SE now.", "model", "MINI", "MINI Cooper SE"),
        ("The Rolls-Royce Spectre is built at Goodwood.", "model", "Rolls-Royce", "Rolls-Royce Spectre"),
        ("The plant in San Luis Potosí builds the 3 Series.", "place", "city", "San Luis Potosí"),
        ("Sales in South Korea grew strongly.", "place", "country", "South Korea"),
    ],
)
def test_facts_are_typed_and_located(sentence, kind, group, value):
    facts = [f for f in extract_facts(sentence) if f.type == kind]
    assert facts and facts[0].value == value and facts[0].group == group
    assert facts[0].sentence.text[facts[0].start : facts[0].end] == value
    assert facts[0].masked().count("____") == 1 and value not in facts[0].masked()


def test_sentences_are_slices_and_respect_abbreviations():
    text = "Munich. Range is approx. 600 km, i.e. more than before. Dr. Berger spoke.\n\nA second paragraph."
    found = sentences(text)
    assert [s.text for s in found] == ["Munich.", "Range is approx. 600 km, i.e. more than before.",
                                       "Dr. Berger spoke.", "A second paragraph."]
    assert [s.paragraph for s in found] == [0, 0, 0, 1]
    assert all(s.text in text for s in found)


def test_facts_of_the_mirror_cover_every_type(docs):
    counts = Counter(f.type for d in docs for f in extract_facts(d["text"]))
    assert set(counts) == set(FACT_TYPES) and min(counts.values()) >= 50


# --- split -------------------------------------------------------------------------------------------------------


def test_split_is_stable_when_articles_are_added(docs):
    split = FMT.split
    before = {d["id"]: s for s, ds in split_documents(docs, split, SEED).items() for d in ds}
    added = docs + [{**docs[i % len(docs)], "id": f"T0{500000 + i}EN"} for i in range(50)]
    after = {d["id"]: s for s, ds in split_documents(added, split, SEED).items() for d in ds}
    assert len(after) == len(before) + 50
    assert {i: after[i] for i in before} == before
    assert assign_split(docs[0]["id"], split, SEED + 1) in SPLITS  # the seed salts the hash


def test_split_fractions_are_roughly_right():
    split = SplitParams(validation=0.1, test=0.2)
    counts = Counter(assign_split(f"T0{400000 + i}EN", split, SEED) for i in range(5000))
    assert abs(counts["test"] / 5000 - 0.2) < 0.02
    assert abs(counts["validation"] / 5000 - 0.1) < 0.02
    other_seed = Counter(assign_split(f"T0{400000 + i}EN", split, SEED + 1) for i in range(5000))
    assert other_seed != counts


# --- rows ------------------------------------------------------------------------------------------------------


def test_every_line_parses_with_roles_in_order(data, docs, by_id, tmp_path):
    dataset.write(data, tmp_path)
    seen = set()
    for name in SPLITS:
        lines = (tmp_path / f"{name}.jsonl").read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and all(lines[:-1])
        rows = [json.loads(line) for line in lines[:-1]]
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        for row in rows:
            assert set(row) == {"id", "style", "messages"} and row["style"] in ("instruct", "qa")
            assert tuple(m["role"] for m in row["messages"]) == ROLES
            assert all(set(m) == {"role", "content"} and m["content"].strip() for m in row["messages"])
            assert row["messages"][0]["content"] == FMT.system_prompt
            doc = by_id[row["id"].split("/")[0]]
            if row["style"] == "instruct":
                assert row["messages"][1]["content"] == f"Tell me about: {doc['title']}"
                assert row["messages"][2]["content"] == doc["text"]
        seen |= {r["id"].split("/")[0] for r in rows}
        assert Counter(r["style"] for r in rows)["instruct"] == len(data.documents[name])
    assert seen == {d["id"] for d in docs}


def test_styles_select_the_rows(docs):
    only = {style: dataset.build(docs, FMT.model_copy(update={"style": style}), SEED) for style in ("instruct", "qa")}
    assert {r["style"] for r in only["instruct"].rows["train"]} == {"instruct"}
    assert {r["style"] for r in only["qa"].rows["train"]} == {"qa"}


def test_qa_answers_are_quoted_from_across_the_article(docs):
    paragraphs_used, types, first_only = Counter(), Counter(), 0
    for doc in docs:
        pairs = qa_pairs(doc, FMT.qa_per_article, SEED)
        assert len(pairs) <= FMT.qa_per_article
        assert len({p.question for p in pairs}) == len(pairs)
        for p in pairs:
            assert p.answer in doc["text"] and p.fact.value in p.answer
            assert doc["title"] in p.question
            if "____" in p.question:  # a cloze question: the blank filled with the fact gives the answer
                assert p.question.split(f'"{doc["title"]}": ', 1)[1].replace("____", p.fact.value) == p.answer
            types[p.fact.type] += 1
        used = {p.fact.sentence.paragraph for p in pairs}
        paragraphs_used.update(used)
        fact_paragraphs = {f.sentence.paragraph for f in extract_facts(doc["text"]) if usable(f)}
        if len(fact_paragraphs) > 1 and len(pairs) > 1:
            assert len(used) > 1, doc["id"]
        first_only += used == {0}
    assert set(types) == set(FACT_TYPES)
    assert sum(n for p, n in paragraphs_used.items() if p > 0) > paragraphs_used[0]
    assert first_only < len(docs) // 10


def test_qa_reference_and_prompts_come_from_test_articles(data, by_id):
    test_ids = {d["id"] for d in data.documents["test"]}
    assert data.qa_reference and {r["article_id"] for r in data.qa_reference} <= test_ids
    for ref in data.qa_reference:
        assert ref["answer"] in by_id[ref["article_id"]]["text"]
    assert len(data.prompts) == FMT.eval_prompts
    assert {p["id"] for p in data.prompts} <= test_ids
    assert all(p["prompt"] == f"Tell me about: {p['title']}" for p in data.prompts)
    # the order is fixed per id: a new test article can only insert itself, never reorder the others
    fewer = dataset.eval_prompts(data.documents["test"][1:], 100, SEED)
    full = dataset.eval_prompts(data.documents["test"], 100, SEED)
    assert fewer == [p for p in full if p["id"] != data.documents["test"][0]["id"]]


# --- multiple choice -------------------------------------------------------------------------------------------


def test_mcqa_choices_are_the_fact_and_same_type_distractors_from_other_articles(data, docs, by_id):
    test_ids = {d["id"] for d in data.documents["test"]}
    assert data.mcqa
    for item in data.mcqa:
        doc = by_id[item["article_id"]]
        assert item["article_id"] in test_ids and doc["title"] in item["question"]
        choices = item["choices"]
        assert len(choices) == FMT.mcqa_choices and len({normalise(c) for c in choices}) == len(choices)
        masked = item["question"].split("\n")[1]
        assert masked.count("____") == 1
        for i, choice in enumerate(choices):
            filled = masked.replace("____", choice)
            # the filled-in value is read back as a fact of the item's type at the blank
            at_blank = [f for f in extract_facts(filled) if f.start == masked.index("____")]
            assert at_blank and at_blank[0].type == item["type"] and at_blank[0].value == choice
            if i == item["answer"]:
                assert filled in doc["text"]
            else:
                assert choice not in doc["text"]
                assert any(choice in d["text"] for d in docs if d["id"] != doc["id"])
    per_article = Counter(item["article_id"] for item in data.mcqa)
    assert max(per_article.values()) <= FMT.mcqa_per_article
    # the knowledge set: the same kind of items about training articles, the facts fine-tuning should teach
    train_ids = {d["id"] for d in data.documents["train"]}
    assert data.mcqa_knowledge and {item["article_id"] for item in data.mcqa_knowledge} <= train_ids
    assert max(Counter(item["article_id"] for item in data.mcqa_knowledge).values()) <= FMT.mcqa_knowledge_per_article
    assert {item["type"] for item in data.mcqa} == set(FACT_TYPES)
    positions = Counter(item["answer"] for item in data.mcqa)
    assert len(positions) == FMT.mcqa_choices  # the answer position is shuffled


def test_outputs_are_deterministic(docs, data, tmp_path):
    dataset.write(data, tmp_path / "a")
    dataset.write(dataset.build(list(reversed(docs)), FMT, SEED), tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["mcqa.jsonl", "mcqa_knowledge.jsonl", "prompts.jsonl", "qa_reference.jsonl", "test.jsonl",
                     "train.jsonl", "validation.jsonl"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    dataset.write(dataset.build(docs, FMT, SEED + 1), tmp_path / "c")
    assert (tmp_path / "c" / "mcqa.jsonl").read_bytes() != (tmp_path / "a" / "mcqa.jsonl").read_bytes()


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_documents_fail_with_a_clear_message(docs):
    with pytest.raises(ValueError, match=rf"document 2 \({docs[1]['id']}\): field 'text' missing or empty"):
        dataset.build([docs[0], {**docs[1], "text": ""}, *docs[2:]], FMT, SEED)
    with pytest.raises(ValueError, match=rf"duplicate id '{docs[0]['id']}'"):
        dataset.build([docs[0], docs[0]], FMT, SEED)
    with pytest.raises(ValueError, match="empty train or test set"):
        dataset.build(docs[:2], FMT, SEED)


# --- stats, histogram, card --------------------------------------------------------------------------------------


def test_stats_histogram_and_card(data, tokenizer):
    tokens = {name: token_counts([d["text"] for d in data.documents[name]], tokenizer) for name in SPLITS}
    stats = dataset_stats(data, tokens)
    for name in SPLITS:
        s = stats["splits"][name]
        assert s["documents"] == len(data.documents[name]) == len(tokens[name])
        assert s["rows"] == len(data.rows[name]) == sum(s["rows_by_style"].values())
        assert s["tokens"]["total"] == sum(tokens[name]) > 0
        assert s["tokens"]["min"] <= s["tokens"]["median"] <= s["tokens"]["max"]
        assert s["characters"]["total"] == sum(len(d["text"]) for d in data.documents[name])
    text = data.documents["train"][0]["text"]
    assert tokens["train"][0] == len(tokenizer(text, add_special_tokens=False)["input_ids"]) > len(text) / 8
    assert stats["eval"]["mcqa"] == len(data.mcqa) and stats["cleaning"]["removed_share"] == 0.5
    assert metrics(stats)["train"]["tokens_total"] == sum(tokens["train"])
    json.dumps(stats)  # plain JSON

    png = histogram_png(tokens)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png == histogram_png(tokens)
    assert b"matplotlib" not in png.lower()

    card = render_card(stats, FMT, SEED, plot="../../plots/data/tokens_per_document.png", source="bundled",
                       filtering={"filtered": False, "documents": 115})
    assert card == render_card(stats, FMT, SEED, plot="../../plots/data/tokens_per_document.png", source="bundled",
                               filtering={"filtered": False, "documents": 115})
    train = stats["splits"]["train"]
    styles = train["rows_by_style"]
    assert f"| train | {train['documents']} | {styles['instruct']} | {styles['qa']} | {train['rows']} |" in card
    assert "![tokens per document](../../plots/data/tokens_per_document.png)" in card
    for section in ("## Source", "## Counts", "## Tokens per document", "### Cleaning", "### Filtering",
                    "## Fields", "## Licence", "## Known limitations"):
        assert section in card
    assert stats["snapshot"]["first"] in card and stats["snapshot"]["last"] in card


# --- the stage -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stage_writes_every_output_identically_twice(docs, tmp_path):
    """`python -m stages.format` in a fresh folder with the shipped params and the tiny base's tokenizer, run twice."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    materialise_base(tmp_path / "models" / "base", BaseModelParams(name="tiny"), seed=42)
    write_jsonl(tmp_path / "data/filtered/documents.jsonl", docs, sort_key="id")
    (tmp_path / "data/filtered/summary.json").write_text(json.dumps({"filtered": False}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    outputs = [*(f"data/processed/{n}" for n in ("train.jsonl", "validation.jsonl", "test.jsonl", "prompts.jsonl",
                                                  "mcqa.jsonl", "qa_reference.jsonl", "stats.json", "README.md")),
               "plots/data/tokens_per_document.png", "metrics/data.json"]
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "stages.format"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs.append({name: (tmp_path / name).read_bytes() for name in outputs})
    assert runs[0] == runs[1]
    stats = json.loads(runs[0]["data/processed/stats.json"])
    assert sum(s["documents"] for s in stats["splits"].values()) == len(docs)
    assert all(r["style"] == "instruct" for r in read_jsonl(tmp_path / "data/processed/train.jsonl"))
    assert json.loads(runs[0]["metrics/data.json"])["eval"]["prompts"] > 0
