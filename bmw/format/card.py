"""The data set card `data/processed/README.md`: what the data is, how it was made, what it holds and lacks."""

from __future__ import annotations

from bmw.format.split import SPLITS
from bmw.params import FormatParams

FIELDS = [
    ["`train.jsonl`, `validation.jsonl`, `test.jsonl`",
     "`id`, `style` (`instruct` or `qa`), `messages`: system, user and assistant turns (`role`, `content`)"],
    ["`prompts.jsonl`", "`id` (article), `title`, `prompt`: held-out generation prompts, in their seeded order"],
    ["`qa_reference.jsonl`",
     "`id`, `article_id`, `question`, `answer`: held-out questions answered by a sentence quoted from the article"],
    ["`mcqa.jsonl`", "`id`, `article_id`, `type` (date, figure, model, place), `question` (a sentence with one fact "
     "masked as `____`), `choices`, `answer` (index of the right choice)"],
    ["`stats.json`", "the statistics above"],
]

LIMITATIONS = """\
- Facts for the `qa` style and the multiple-choice set are found by regular expressions (dates, figures with a
  unit, BMW/MINI/Rolls-Royce model names, a gazetteer of places); facts they do not know are never asked about,
  and a fact can be misread where a sentence is unusual.
- A `qa` answer is the whole sentence that holds the fact, not a short span.
- Multiple-choice distractors are real values of the same type from other releases and absent from the masked
  release, so exactly one choice is stated in it; a distractor can still be true in the world.
- The split is by article; releases on the same event in different splits share wording.
- Releases are the company's own communication: one voice, promotional, English only unless configured."""


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _flatten(d: dict, prefix: str = "") -> list[list]:
    rows: list[list] = []
    for k in sorted(d):
        if isinstance(d[k], dict):
            rows += _flatten(d[k], f"{prefix}{k}.")
        else:
            rows.append([f"{prefix}{k}", d[k]])
    return rows


def _summary_lines(title: str, summary: dict | None) -> list[str]:
    if not summary:
        return []
    return [f"### {title}", "", _table(["key", "value"], _flatten(summary)), ""]


def render_card(
    stats: dict,
    fmt: FormatParams,
    seed: int,
    plot: str,
    source: str | None = None,
    filtering: dict | None = None,
) -> str:
    """Markdown for the card; `plot` is the histogram's path relative to the card. No generation date."""
    splits = stats["splits"]
    snapshot = stats["snapshot"] or {"first": "-", "last": "-"}
    styles = sorted({s for name in SPLITS for s in splits[name]["rows_by_style"]})
    counts = _table(
        ["split", "documents", *[f"{s} rows" for s in styles], "rows"],
        [[name, splits[name]["documents"], *[splits[name]["rows_by_style"].get(s, 0) for s in styles],
          splits[name]["rows"]] for name in SPLITS],
    )
    keys = ["min", "mean", "median", "max", "total"]
    tokens = _table(["split", *[f"tokens {k}" for k in keys], "characters mean"],
                    [[name, *[splits[name]["tokens"][k] for k in keys], splits[name]["characters"]["mean"]]
                     for name in SPLITS])
    ev = stats["eval"]
    by_type = ", ".join(f"{t}: {n}" for t, n in ev["mcqa_by_type"].items()) or "none"
    parts = [
        "# BMW Group press releases: chat data set",
        "",
        "Press releases of the BMW Group PressClub, extracted from their PDF attachments, cleaned of layout "
        "boilerplate and formatted as Qwen3 ChatML conversations for supervised fine-tuning.",
        "",
        "## Source",
        "",
        f"- Site: {source or 'unknown'}",
        f"- Snapshot: releases dated {snapshot['first']} to {snapshot['last']}",
        f"- Style: `{fmt.style}`; system prompt: \"{fmt.system_prompt}\"",
        "- `instruct` rows ask `Tell me about: <title>` and answer with the release text; `qa` rows ask about a "
        "date, figure, model or place of the release and answer with the sentence that states it.",
        f"- Split by a hash of the article id salted with seed {seed} (validation {fmt.split.validation}, "
        f"test {fmt.split.test}): adding releases never moves existing ones.",
        "",
        "## Counts",
        "",
        counts,
        "",
        f"Held out from the test split: {ev['prompts']} generation prompts, {ev['qa_reference']} reference "
        f"question/answer pairs, {ev['mcqa']} multiple-choice items ({fmt.mcqa_choices} choices; {by_type}). "
        f"From the training split: {ev.get('mcqa_knowledge', 0)} multiple-choice items built the same way "
        "(`mcqa_knowledge.jsonl`), the facts fine-tuning should teach.",
        "",
        "## Tokens per document",
        "",
        tokens,
        "",
        f"![tokens per document]({plot})",
        "",
    ]
    processing = _summary_lines("Cleaning", stats.get("cleaning")) + _summary_lines("Filtering", filtering)
    if processing:
        parts += ["## Processing", "", *processing]
    parts += [
        "## Fields",
        "",
        _table(["file", "one JSON object per line"], FIELDS),
        "",
        "## Licence",
        "",
        "The texts are press material of BMW AG, published for journalistic use; BMW AG holds the rights. This "
        "data set is meant for research on language models; check the site's terms of use before redistributing "
        "it. Releases of the "
        "bundled offline mirror are synthetic texts written for this project.",
        "",
        "## Known limitations",
        "",
        LIMITATIONS,
        "",
    ]
    return "\n".join(parts)
