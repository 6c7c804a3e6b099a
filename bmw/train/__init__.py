"""Training of the variants: TRL SFTTrainer (full fine-tuning or PEFT LoRA) or none, on a planned architecture.

variant (train_variant: the stage's entry point), sft (one resumable SFTTrainer run), config (params -> SFTConfig /
LoraConfig, packing guard), backend (transformers or Unsloth), data (chat splits), callbacks (dvclive by step,
progress), checkpoints (resume point, run fingerprint), summary (metrics.json figures). The saved variant's
format is `bmw.models.variant`.
"""
