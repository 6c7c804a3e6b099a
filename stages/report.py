"""report: the comparative report across variants, its plots, and the model card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bmw.io import atomic_dir, atomic_open
from bmw.models.plan import load_plans_by_type
from bmw.params import load_params
from bmw.report.collect import collect
from bmw.report.render import make_plots, model_card, report_markdown

REPORT_DIR = Path("reports")
PLOTS_DIR = Path("plots/report")


def _json(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params()
    results = collect(list(params.variants))
    with atomic_dir(REPORT_DIR) as reports, atomic_dir(PLOTS_DIR) as plots:  # installed together, once all is written
        figures = {k: PLOTS_DIR / v.relative_to(plots) for k, v in make_plots(results, plots).items()}
        report = report_markdown(results, params, figures, REPORT_DIR, _json("metrics/data.json"),
                                 load_plans_by_type())
        with atomic_open(reports / "report.md") as f:
            f.write(report)
        with atomic_open(reports / "MODEL_CARD.md") as f:
            f.write(model_card(results, params))
    logging.getLogger("report").info("wrote %s and %s (%d variants)", REPORT_DIR / "report.md",
                                     REPORT_DIR / "MODEL_CARD.md", len(results))


if __name__ == "__main__":
    main()
