"""Evaluation of a model variant: perplexity, generations, semantic entropy, multiple choice, lm-eval tasks.

Each module is a set of functions over (model, tokenizer, data); `evaluate.evaluate_variant` runs them all for
the `eval@<variant>` stage.
"""
