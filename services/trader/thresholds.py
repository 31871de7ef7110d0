"""The trader's thresholds as numbers: a setting of ``"auto"`` resolved from the active
versions' out-of-sample sweeps (:mod:`kryptobot.thresholds`), read off ``GET /model``.

The decision rules (:mod:`kryptobot.trading.decisions`) only ever see numbers: a cycle or
a backtest resolves the settings first and decides with the copy this returns, and says
which number each threshold was and why.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from kryptobot.thresholds import classifier_threshold, forecast_threshold
from kryptobot.trading.settings import TraderConfig
from services.framework.schemas import ModelInfo

#: layer -> (block of TraderConfig, its threshold key)
THRESHOLDS = {
    "signal": ("ml", "min_confidence_threshold"),
    "ensemble": ("ensemble", "confidence_threshold"),
    "forecast": ("forecasting", "confidence_threshold"),
}


def auto_layers(config: TraderConfig) -> list[str]:
    """The layers whose threshold is ``"auto"`` (they need their service's GET /model)."""
    return [layer for layer, (block, key) in THRESHOLDS.items() if getattr(getattr(config, block), key) == "auto"]


def _one(layer: str, setting, models: Sequence[ModelInfo] | None) -> dict:
    if setting == "auto" and not models:
        fallback = classifier_threshold(setting, None)[0] if layer != "forecast" else forecast_threshold(setting, None)[0]
        return {"setting": setting, "threshold": fallback, "version": None,
                "reason": f"the {layer} service did not say which version it serves: fallback {fallback:g}"}
    if layer == "forecast":
        # each active line's sweep; the combined forecast counts as confident only where
        # every line's own test block showed it may (the strictest line)
        resolved = [(*forecast_threshold(setting, m.metrics), m.version) for m in models or []] or [(float(setting), "", None)]
        value, reason, version = max(resolved, key=lambda r: r[0])
    else:
        model = models[0] if models else None
        metrics = None if model is None else (model.metrics or {})
        if layer == "ensemble" and metrics is not None:
            metrics = metrics.get("ensemble")
        # the trader is long-only: its entries are buy signals, so the buy side's sweep
        value, reason = classifier_threshold(setting, metrics, side="buy")
        version = None if model is None else model.version
    if setting != "auto":
        reason, version = "fixed in the settings", None
    return {"setting": setting, "threshold": value, "reason": reason, "version": version}


def resolve_thresholds(config: TraderConfig, models: Mapping[str, Sequence[ModelInfo] | None]) -> tuple[TraderConfig, dict]:
    """``config`` with every threshold a number, and per layer what it was set to, the number,
    why, and the version whose sweep decided (``models``: each layer's GET /model answer,
    None when its service did not answer)."""
    report, blocks = {}, {}
    for layer, (block, key) in THRESHOLDS.items():
        settings = getattr(config, block)
        report[layer] = _one(layer, getattr(settings, key), models.get(layer))
        blocks[block] = settings.model_copy(update={key: report[layer]["threshold"]})
    return dataclasses.replace(config, **blocks), report


def numbers(report: Mapping[str, dict]) -> dict[str, float]:
    """The thresholds a decision was made with, by layer (what each decision records)."""
    return {layer: entry["threshold"] for layer, entry in report.items()}
