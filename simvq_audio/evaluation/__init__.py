"""Evaluation of a model against real-codec baselines: metrics, CSV/JSON reports, figures."""

from .baselines import Baseline, BaselineError, BaselineUnavailable, parse_baseline, run_baseline
from .evaluate import CSV_COLUMNS, METRICS, EvalConfig, EvalReport, evaluate, format_table

__all__ = [
    "CSV_COLUMNS",
    "METRICS",
    "Baseline",
    "BaselineError",
    "BaselineUnavailable",
    "EvalConfig",
    "EvalReport",
    "evaluate",
    "format_table",
    "parse_baseline",
    "run_baseline",
]
