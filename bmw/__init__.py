"""bmw-press-llm: the library behind the DVC stages (crawl, text, llm, chat, models, training, evaluation, report)."""
