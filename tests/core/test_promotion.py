"""The promotion gate's rule (kryptobot.promotion) and each service's use of it, on metadata."""
from __future__ import annotations

import pytest

from kryptobot.models.anomaly.runtime import AnomalyRuntime
from kryptobot.models.ensemble.runtime import EnsembleRuntime
from kryptobot.models.forecast.runtime import ForecastRuntime
from kryptobot.models.signal.runtime import SignalRuntime
from kryptobot.promotion import judge, lookup
from kryptobot.settings import Settings


def test_the_baseline_must_be_met_and_the_champion_within_the_tolerance():
    first = judge("roc_auc", 0.55, 0.5, None, None, 0.01)
    assert first.promote and "first version" in first.reason
    below = judge("roc_auc", 0.49, 0.5, None, None, 0.01)
    assert not below.promote and "naive baseline" in below.reason
    # the tolerance is for the champion only: a hair below the baseline never passes
    assert not judge("roc_auc", 0.4999, 0.5, 0.45, "signal-v1", 0.01).promote
    assert judge("roc_auc", 0.595, 0.5, 0.60, "signal-v1", 0.01).promote  # within 0.01 of it
    worse = judge("roc_auc", 0.58, 0.5, 0.60, "signal-v1", 0.01)
    assert not worse.promote and "signal-v1" in worse.reason and "tolerance" in worse.reason
    assert judge("roc_auc", 0.58, 0.5, None, "signal-v1", 0.01).promote  # the champion has no number to compare
    undefined = judge("roc_auc", None, None, 0.6, "signal-v1", 0.01)
    assert not undefined.promote and "undefined" in undefined.reason
    # lower is better (e.g. a loss): the signs turn around
    assert judge("loss", 0.9, 1.0, 0.91, "x-v1", 0.0, higher_is_better=False).promote
    assert not judge("loss", 1.1, 1.0, None, None, 0.0, higher_is_better=False).promote


def test_lookup_reads_finite_numbers_only():
    meta = {"metrics": {"a": {"b": 0.3}, "nan": float("nan"), "flag": True, "none": None}}
    assert lookup(meta, "metrics.a.b") == 0.3
    assert lookup(meta, "metrics.a.c") is None and lookup(meta, "metrics.nan") is None
    assert lookup(meta, "metrics.flag") is None and lookup(meta, "metrics.none") is None and lookup(None, "x") is None


def _classifier(auc: float | None, version: str = "x-v1") -> dict:
    return {"version": version, "metrics": {"roc_auc": auc, "baseline": {"roc_auc": None if auc is None else 0.5}}}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return Settings(models_dir=tmp_path_factory.mktemp("models"))


def test_each_service_gates_on_its_own_metric(settings):
    signal = SignalRuntime(settings)
    assert signal.promotion(_classifier(0.56), _classifier(0.60, "signal-v1")).promote is False
    assert signal.promotion(_classifier(0.56), None).metric == "roc_auc"

    ensemble = EnsembleRuntime(settings)
    candidate = {"metrics": {"ensemble": _classifier(0.52)["metrics"]}}
    assert ensemble.promotion(candidate, None).promote
    assert not ensemble.promotion(candidate, {"version": "ensemble-v1", "metrics": {"ensemble": {"roc_auc": 0.6}}}).promote

    forecast = ForecastRuntime(settings)
    negative = forecast.promotion({"metrics": {"skill": -0.002}}, None)
    assert not negative.promote and negative.baseline == 0.0  # a negative skill never promotes
    assert forecast.promotion({"metrics": {"skill": 0.03}}, {"version": "gru-v1", "metrics": {"skill": 0.035}}).promote

    anomaly = AnomalyRuntime(settings)
    assert anomaly.promotion({"metrics": {"detection": None}}, None).promote  # no ground truth: nothing to check
    detection = {"autoencoder": {"f1": 0.30}, "isolation_forest": {"f1": 0.35}, "feature_magnitude": {"f1": 0.2}}
    lost = anomaly.promotion({"metrics": {"detection": detection}}, None)
    assert not lost.promote and lost.baseline == 0.35  # the best of its baselines
    # real history: recall of dated shocks at the same flag rate, next to the z-score's
    shocks = {"detection": None, "events": {"holdout": {"autoencoder": {"recall": 0.6}, "zscore": {"recall": 0.5}}}}
    recall = anomaly.promotion({"metrics": shocks}, None)
    assert recall.promote and "event recall" in recall.metric and recall.baseline == 0.5
