"""The prune stage: layer plans for every model type, from per-layer scores on calibration text.

calibration (the text), scores (block influence, angular distance), laco (merge trials), plans (make_plan),
plots (the layer-score figure).
"""
