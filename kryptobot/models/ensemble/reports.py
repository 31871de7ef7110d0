"""Per-version reports of the ensemble: training_results.json and its plots."""
from __future__ import annotations

import json
from pathlib import Path

from kryptobot import plots
from kryptobot.models.ensemble.schemas import BASE_MODELS
from kryptobot.models.common.classifier import model_columns

COMPARED = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
PLOTTED = ("accuracy", "precision", "recall", "f1", "roc_auc")


def write_reports(reports: Path, info: dict, voting: str, weights: list[float]) -> None:
    metrics = info["metrics"]
    ensemble, base_models = metrics["ensemble"], metrics["base_models"]
    results = {
        "voting": voting,
        "weights": dict(zip(BASE_MODELS, weights)),
        "feature_columns": model_columns(info["features"]),
        "ensemble": {k: ensemble.get(k) for k in (*COMPARED, "base_rate", "decision_rule")},
        "base_models": {name: {k: m.get(k) for k in (*COMPARED, "base_rate")} for name, m in base_models.items()},
        "baseline": ensemble["baseline"],
        "at_confidence_threshold": ensemble["at_confidence_threshold"],
        "threshold_sweep": ensemble.get("threshold_sweep"),
        "evaluation": ensemble["evaluation"],
        "reliability": metrics["reliability"],
        "training_samples": info["data_range"]["samples"],
        "positive_outcomes": info["data_range"]["positive_outcomes"],
    }
    (reports / "training_results.json").write_text(json.dumps(results, indent=2))

    rows = {"ensemble": ensemble, **base_models}
    # an undefined metric (None: a hard ensemble's Brier, a one-class AUC) is drawn as 0
    by_metric = {k: {name: rows[name].get(k) or 0.0 for name in rows} for k in PLOTTED}
    plots.grouped_bars(reports / "model_comparison.png", by_metric, "Out-of-sample metrics: base models vs ensemble")
    by_model = {name: {k: rows[name].get(k) or 0.0 for k in PLOTTED} for name in rows}
    plots.grouped_bars(
        reports / "metrics_by_model.png", by_model, "Metrics by model (dashed: naive baseline)",
        baseline={k: ensemble["baseline"].get(k) for k in PLOTTED},
    )
    reliability = metrics["reliability"]
    if reliability:
        plots.lines(
            reports / "calibration.png",
            {"soft ensemble": reliability["fraction_positive"], "perfectly calibrated": reliability["mean_predicted"]},
            f"Reliability of the soft ensemble (out-of-sample, Brier {ensemble['brier']:.4f})",
            "mean predicted probability", "observed success rate", x=reliability["mean_predicted"],
        )
