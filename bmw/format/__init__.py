"""Chat formatting: cleaned press releases -> Qwen3 ChatML rows, a stable split, held-out eval sets, stats, card."""
