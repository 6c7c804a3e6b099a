"""Retrain the tiny base's tokenizer on the mirror's corpus into `bmw/base/tiny_tokenizer/` (committed).

`bmw mirror tokenizer`; the tiny tokenizer is a byproduct of the mirror's text, so it is rebuilt from here.
"""

from __future__ import annotations

import argparse
import logging

from bmw.base.tokenizer import TINY_TOKENIZER_DIR, VOCAB_SIZE, build_tokenizer
from bmw.io import atomic_dir
from mirror.content import mirror_articles

log = logging.getLogger(__name__)


def corpus_texts() -> list[str]:
    """One text per article of the mirror: title and paragraphs joined by blank lines, the layout the documents
    have downstream (so newline runs get their own tokens)."""
    return ["\n\n".join([article.title, *article.paragraphs]) for article in mirror_articles()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bmw mirror tokenizer", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    texts = corpus_texts()
    log.info("training a %d-token byte-level BPE on %d texts", VOCAB_SIZE, len(texts))
    tokenizer = build_tokenizer(texts)
    with atomic_dir(TINY_TOKENIZER_DIR) as tmp:
        tokenizer.save_pretrained(tmp)
    log.info("wrote %s: %d tokens", TINY_TOKENIZER_DIR, len(tokenizer))


if __name__ == "__main__":
    main()
