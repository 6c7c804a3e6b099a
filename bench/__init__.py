"""Benchmarks (`bmw bench <what>`): model (training and evaluation at a shape, vs plain TRL), scrape, clean, remote.

They sit beside the product package, not in it: editing a benchmark re-runs no stage.
"""
