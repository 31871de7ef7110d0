"""Threshold sweeps on out-of-sample scores and the "auto" thresholds they resolve to.

The objective (kryptobot.thresholds.OBJECTIVE) must find a threshold where the scores
carry information about the realised returns, and fall back where they carry none: on a
pure random walk a classifier's "auto" threshold is the lowest swept, so it filters
nothing it has not shown it can.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from kryptobot.data import DataSpec
from kryptobot.models.common.classifier import load_meta_dataset
from kryptobot.models.ensemble.runtime import EnsembleRuntime
from kryptobot.models.ensemble.schemas import EnsembleTrainConfig
from kryptobot.models.ensemble.training import fit as fit_ensemble
from kryptobot.models.signal.runtime import SignalRuntime
from kryptobot.models.signal.schemas import SignalTrainConfig
from kryptobot.runtime import TrainContext
from kryptobot.schemas import ClassifierInstance
from kryptobot.settings import Settings
from kryptobot.store import ModelStore
from kryptobot.thresholds import (
    CLASSIFIER_GRID,
    FORECAST_NEVER,
    MIN_KEPT_SHARE,
    choose,
    classifier_threshold,
    forecast_threshold,
    mean_ci95,
    sweep,
)

DATA = {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2021-12-31"}


def test_sweep_rows_and_the_objective_on_informative_and_uninformative_scores():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.35, 0.75, 4000)
    informative = 0.05 * (scores - 0.55) + rng.normal(0, 0.01, len(scores))
    result = sweep(scores, informative, informative > 0, CLASSIFIER_GRID, fallback=CLASSIFIER_GRID[0])
    assert [r["threshold"] for r in result["rows"]] == list(CLASSIFIER_GRID) and result["n"] == 4000
    shares = [r["kept_share"] for r in result["rows"]]
    assert shares == sorted(shares, reverse=True) and result["rows"][0]["kept"] == int((scores >= 0.40).sum())
    chosen = next(r for r in result["rows"] if r["threshold"] == result["auto"]["threshold"])
    # the highest mean among thresholds keeping >= 20% whose interval clears the all-trades mean
    assert chosen["kept_share"] >= MIN_KEPT_SHARE and chosen["ci95"][0] > result["all"]["mean_return"]
    assert chosen["threshold"] > CLASSIFIER_GRID[0] and chosen["precision"] > result["all"]["precision"]

    noise = rng.normal(0, 0.01, len(scores))  # returns that owe nothing to the scores
    blind = sweep(scores, noise, noise > 0, CLASSIFIER_GRID, fallback=CLASSIFIER_GRID[0])
    assert blind["auto"]["threshold"] == CLASSIFIER_GRID[0] and "fallback" in blind["auto"]["reason"]
    assert choose({**blind, "rows": []})[0] == CLASSIFIER_GRID[0]


def test_mean_ci95_and_settings_resolution():
    assert mean_ci95([]) == (None, None) and mean_ci95([0.1]) == (0.1, None)
    mean, (lo, hi) = mean_ci95([0.0, 0.02, 0.04])
    assert mean == pytest.approx(0.02) and lo < mean < hi and hi - mean == pytest.approx(mean - lo)
    assert classifier_threshold(0.6, None) == (0.6, "fixed in the settings")  # the seed's numbers keep working
    assert classifier_threshold("auto", None)[0] == CLASSIFIER_GRID[0]  # a version from before sweeps
    assert forecast_threshold("auto", {})[0] == FORECAST_NEVER
    assert forecast_threshold(0.7, {"confidence_sweep": None}) == (0.7, "fixed in the settings")


def _signal(tmp_path, predictability: float | None):
    settings = Settings(models_dir=tmp_path)
    runtime = SignalRuntime(settings)
    ctx = TrainContext(settings=settings, store=ModelStore(tmp_path, "signal"), runtime=runtime)
    data = {**DATA, **({} if predictability is None else {"predictability": predictability})}
    config = SignalTrainConfig.model_validate({"data": data, "model": {"n_estimators": 40, "max_depth": 5}, "evaluation": {"n_splits": 3}})
    model = runtime.train(config, ctx)[0]
    return model, ctx.store


def test_signal_sweep_finds_a_threshold_on_a_predictable_market_and_none_on_a_random_walk(tmp_path):
    predictable, store = _signal(tmp_path / "p", None)
    buy = predictable.metadata()["metrics"]["threshold_sweep"]["sides"]["buy"]
    print(f"\npredictable market, buy signals: auto {buy['auto']}")
    assert buy["auto"]["threshold"] > CLASSIFIER_GRID[0]
    assert classifier_threshold("auto", predictable.metadata()["metrics"]) == (buy["auto"]["threshold"], buy["auto"]["reason"])
    # stored with the version's reports too
    with store.stage("signal") as staged:
        predictable.save(staged.artifacts, staged.reports)
        version = store.commit(staged, "signal", predictable.metadata())
    results = json.loads(store.report_path(version, "training_results.json").read_text())
    assert set(results["threshold_sweep"]["sides"]) == {"buy", "sell", "all"}

    walk, _ = _signal(tmp_path / "w", 0.0)
    walk_buy = walk.metadata()["metrics"]["threshold_sweep"]["sides"]["buy"]
    print(f"random walk, buy signals: auto {walk_buy['auto']}")
    assert walk_buy["auto"]["threshold"] == CLASSIFIER_GRID[0]


def test_ensemble_take_resolves_auto_from_the_served_version(tmp_path):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "ensemble_settings.json").write_text(json.dumps({"confidence_threshold": "auto"}))
    settings = Settings(models_dir=tmp_path / "models", config_dir=config_dir)
    runtime = EnsembleRuntime(settings)
    store = ModelStore(settings.models_dir, "ensemble")
    ctx = TrainContext(settings=settings, store=store, runtime=runtime)
    config = EnsembleTrainConfig.model_validate({
        "data": DataSpec(**DATA).model_dump(mode="json"), "evaluation": {"n_splits": 3},
        "random_forest": {"n_estimators": 20}, "gradient_boosting": {"n_estimators": 20}, "ada_boost": {"n_estimators": 20},
    })
    trained = fit_ensemble(config, load_meta_dataset(ctx, config.data, config.labels), ctx, runtime.ensemble_settings.confidence_threshold)
    sweep_ = trained.metadata()["metrics"]["ensemble"]["threshold_sweep"]["sides"]
    # the training report's take statistics use the version's own "auto" number
    assert trained.metadata()["metrics"]["ensemble"]["at_confidence_threshold"]["confidence_threshold"] == sweep_["all"]["auto"]["threshold"]
    with store.stage("ensemble") as staged:
        trained.save(staged.artifacts, staged.reports)
        version = store.commit(staged, "ensemble", trained.metadata())
    served = runtime.load_version(store, version)
    features = {name: 0.0 for name in served.features}
    out = runtime.predict({"ensemble": served}, [ClassifierInstance(side=s, features=features) for s in ("buy", "sell")])
    assert [p["confidence_threshold"] for p in out] == [sweep_["buy"]["auto"]["threshold"], sweep_["sell"]["auto"]["threshold"]]
    assert all(p["take"] == (p["probability"] >= p["confidence_threshold"]) for p in out)
