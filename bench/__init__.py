"""Benchmarks (`bmw bench <what>`): model (training and evaluation at a shape, vs plain TRL), scrape, clean, remote.

They sit beside the product package, not in it: editing a benchmark re-runs no stage.
"""

import bmw  # noqa: F401  first, for its quieting of torchao's import-time warnings (bmw/__init__.py)
