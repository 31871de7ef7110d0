"""The ensemble: compiled serving equals scikit-learn's VotingClassifier; honest metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kryptobot.data import DataSpec
from kryptobot.models.ensemble import BASE_MODELS, EnsembleService, EnsembleTrainConfig
from kryptobot.runtime import TrainContext
from kryptobot.settings import Settings
from kryptobot.store import ModelStore

SMALL = {"random_forest": {"n_estimators": 30}, "gradient_boosting": {"n_estimators": 30}, "ada_boost": {"n_estimators": 30}}


def _fit(tmp_path, voting="soft", weights=(1, 2, 1), predictability=0.8, symbols=("SYNA", "SYNB"), start="2016-01-01"):
    settings = Settings(models_dir=tmp_path)
    service = EnsembleService(settings)
    store = ModelStore(tmp_path, "ensemble")
    ctx = TrainContext(settings=settings, store=store, service=service)
    config = EnsembleTrainConfig(
        data=DataSpec(symbols=list(symbols), start=start, end="2024-12-31", predictability=predictability),
        voting=voting, weights=list(weights), evaluation={"n_splits": 3}, **SMALL,
    )
    (model,) = service.train(config, ctx)
    with store.stage("ensemble") as staged:
        model.save(staged.artifacts, staged.reports)
        version = store.commit(staged, "ensemble", model.metadata())
    return service, model, service.load_version(store, version), store.dir / version


@pytest.mark.parametrize("voting", ["soft", "hard"])
def test_compiled_combination_equals_voting_classifier(tmp_path, voting):
    service, trained, served, _ = _fit(tmp_path, voting=voting)
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(50, 15, 200), rng.normal(0, 0.01, (200, 8)), rng.choice([-1.0, 1.0], 200)]).astype(np.float32)
    from kryptobot.models.ensemble import combine

    score, vote = combine(served.base_probabilities(X), served.weights, voting)
    np.testing.assert_array_equal(vote, trained.estimator.predict(X))
    if voting == "soft":
        np.testing.assert_allclose(score, trained.estimator.predict_proba(X)[:, 1], atol=1e-5)


def test_training_results_report_every_model_next_to_the_baseline(tmp_path):
    _, _, _, path = _fit(tmp_path)
    results = json.loads((path / "reports" / "training_results.json").read_text())
    assert set(results["base_models"]) == set(BASE_MODELS)
    for row in [results["ensemble"], *results["base_models"].values()]:
        assert {"accuracy", "precision", "recall", "f1"} <= set(row)
    assert results["weights"] == {"random_forest": 1.0, "gradient_boosting": 2.0, "ada_boost": 1.0}
    assert results["feature_columns"][-1] == "side" and len(results["feature_columns"]) == 10
    assert {"accuracy", "f1", "roc_auc", "brier"} <= set(results["baseline"])
    assert results["reliability"]["mean_predicted"]
    assert {p.name for p in (path / "reports").iterdir()} >= {"model_comparison.png", "metrics_by_model.png", "calibration.png"}


def test_no_skill_on_a_pure_random_walk(tmp_path):
    _, model, _, _ = _fit(tmp_path, predictability=0.0, symbols=("SYNA", "SYNB", "SYNC", "SYND", "SPY", "QQQ"), start="2012-01-01")
    auc = model.info["metrics"]["ensemble"]["roc_auc"]
    assert abs(auc - 0.5) < 0.05, auc
