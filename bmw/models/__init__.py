"""The model folders the stages pass to each other, and the one way layers are removed or merged.

base (`models/base/`, written by the base stage), plan (`models/plans/<type>.json`, written by prune),
variant (`models/variants/<name>/`, written by train, read by eval), surgery (`apply_plan`).
"""
