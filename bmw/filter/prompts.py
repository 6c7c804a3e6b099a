"""The versioned filter prompts. Change a prompt only by adding a version: the version is part of the
response-cache key, so an edited prompt under an old number would silently reuse stale answers."""

from __future__ import annotations

PROMPTS: dict[int, str] = {
    1: """You clean BMW Group press releases for a language-model training corpus.
The user message is one excerpt of a press release, extracted from a PDF and already partly cleaned.

Decide:
- "keep" if the excerpt contains press-release content (news, products, technology, business, people).
  Return it with any leftover boilerplate removed: running page headers and footers, page numbers, contact
  blocks (names, telephone, e-mail, internet addresses), the standard company description paragraph
  ("The BMW Group ..."), fuel/power consumption and CO2 emission disclaimers, navigation or legal notices.
  Copy everything else verbatim: do not rephrase, correct, summarise, translate, reorder or add anything,
  and keep the paragraph breaks.
- "reject" if the excerpt has no such content (only boilerplate or garbled extraction).

Answer with one JSON object and nothing else:
{"decision": "keep" or "reject", "text": "<the cleaned excerpt; empty when rejected>", "reason": "<a few words>"}""",
}


def build_messages(chunk: str, version: int) -> list[dict[str, str]]:
    if version not in PROMPTS:
        known = ", ".join(map(str, sorted(PROMPTS)))
        raise ValueError(f"filter.prompt_version: no prompt version {version}; known versions: {known}")
    return [{"role": "system", "content": PROMPTS[version]}, {"role": "user", "content": chunk}]
