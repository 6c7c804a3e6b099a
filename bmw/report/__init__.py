"""The comparative report: variant tables, plots, generations side by side, and the model card."""
