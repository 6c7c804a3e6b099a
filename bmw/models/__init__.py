"""Base model, tokenizer and layer surgery.

tokenizer (tiny BPE + Qwen3 ChatML template), tiny (Qwen3 configs), base (models/base/), surgery (apply_plan),
calibration + scores (block influence, angular distance), laco, plans (models/plans/<type>.json), plots.
"""
