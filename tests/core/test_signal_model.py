"""Honesty of the signal model: no skill on a random walk, clear skill where there is some."""
from __future__ import annotations

import numpy as np
import pytest

from kryptobot.data import DataSpec
from kryptobot.models.signal.runtime import SignalRuntime
from kryptobot.models.signal.schemas import SignalTrainConfig
from kryptobot.runtime import TrainContext
from kryptobot.settings import Settings
from kryptobot.store import ModelStore

SYMBOLS = ["SYNA", "SYNB", "SYNC", "SYND", "SPY", "QQQ"]


def _train(tmp_path, predictability: float, seed: int = 11):
    settings = Settings(models_dir=tmp_path)
    service = SignalRuntime(settings)
    ctx = TrainContext(settings=settings, store=ModelStore(tmp_path, "signal"), runtime=service)
    config = SignalTrainConfig(
        data=DataSpec(symbols=SYMBOLS, start="2012-01-01", end="2024-12-31", seed=seed, predictability=predictability),
        model={"n_estimators": 60, "max_depth": 5, "min_samples_leaf": 30},
        evaluation={"n_splits": 4},
    )
    (model,) = service.train(config, ctx)
    return model.metadata()["metrics"]


@pytest.mark.parametrize("seed", [11, 12])
def test_no_skill_on_a_pure_random_walk(tmp_path, seed):
    metrics = _train(tmp_path, predictability=0.0, seed=seed)
    assert metrics["evaluation"]["tested_samples"] > 1500
    assert abs(metrics["roc_auc"] - 0.5) < 0.05, metrics["roc_auc"]
    # and nothing else that looks like skill: accuracy stays near the naive baseline
    assert metrics["accuracy"] < metrics["baseline"]["accuracy"] + 0.05


def test_skill_on_a_predictable_market(tmp_path):
    metrics = _train(tmp_path, predictability=0.8)
    assert metrics["roc_auc"] > 0.58, metrics["roc_auc"]
    assert metrics["brier"] < metrics["baseline"]["brier"]


def test_reported_metrics_are_out_of_sample(tmp_path):
    metrics = _train(tmp_path, predictability=0.8)
    assert metrics["evaluation"]["scheme"] == "purged walk-forward"
    assert metrics["evaluation"]["embargo_bars"] >= 10  # the label horizon (max_holding)
    assert set(metrics["baseline"]) >= {"accuracy", "precision", "f1", "roc_auc", "brier"}
    assert np.isclose(sum(metrics["feature_importance"].values()), 1.0)
