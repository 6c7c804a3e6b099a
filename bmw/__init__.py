"""bmw-press-llm: the library behind the DVC stages (crawl, text, llm, chat, models, training, evaluation, report)."""

import logging

# transformers imports torchao (the train.fp8 dependency) whenever it loads a model; on a CPU build torchao warns
# that its CUDA-only extensions did not load, and its enums trip a torch deprecation warning: noise in every stage's
# log, not a fault. Errors still show.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
