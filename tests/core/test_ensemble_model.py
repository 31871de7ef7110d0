"""The ensemble: compiled serving equals scikit-learn's VotingClassifier; honest metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from kryptobot.data import DataSpec
from kryptobot.features import FEATURE_NAMES
from kryptobot.models.ensemble.schemas import BASE_MODELS, EnsembleTrainConfig
from kryptobot.models.ensemble.model import combine
from kryptobot.models.ensemble.runtime import EnsembleRuntime
from kryptobot.models.ensemble.training import evaluate_ensemble, fit
from kryptobot.models.ensemble.onnx import adaboost_to_onnx
from kryptobot.models.common.onnx import OnnxClassifier
from kryptobot.models.common.classifier import load_meta_dataset, model_columns
from kryptobot.runtime import TrainContext
from kryptobot.settings import Settings
from kryptobot.store import ModelStore

SMALL = {"random_forest": {"n_estimators": 30}, "gradient_boosting": {"n_estimators": 30}, "ada_boost": {"n_estimators": 30}}
SIX_SYMBOLS = ("SYNA", "SYNB", "SYNC", "SYND", "SPY", "QQQ")


def _fit(tmp_path, voting="soft", weights=(1, 2, 1), predictability=0.8, symbols=("SYNA", "SYNB"), start="2016-01-01"):
    """Train through the service's own code, save to a store, load back what serving loads."""
    settings = Settings(models_dir=tmp_path)
    service = EnsembleRuntime(settings)
    store = ModelStore(tmp_path, "ensemble")
    ctx = TrainContext(settings=settings, store=store, runtime=service)
    config = EnsembleTrainConfig(
        data=DataSpec(symbols=list(symbols), start=start, end="2024-12-31", predictability=predictability),
        voting=voting, weights=list(weights), evaluation={"n_splits": 3}, **SMALL,
    )
    dataset = load_meta_dataset(ctx, config.data, config.labels)
    trained = fit(config, dataset, ctx, confidence_threshold=0.6)
    with store.stage("ensemble") as staged:
        trained.save(staged.artifacts, staged.reports)
        version = store.commit(staged, "ensemble", trained.metadata())
    return trained, service.load_version(store, version), store.dir / version, dataset


@pytest.fixture(scope="module", params=["soft", "hard"])
def fitted(request, tmp_path_factory):
    return request.param, _fit(tmp_path_factory.mktemp(request.param), voting=request.param)


def _rows(dataset, n=300):
    """Real feature rows (both sides) and some far outside the training data."""
    real = dataset.X[model_columns(FEATURE_NAMES)].to_numpy(dtype=np.float32)
    pick = np.random.default_rng(0).choice(len(real), size=min(n, len(real)), replace=False)
    rng = np.random.default_rng(1)
    odd = np.column_stack([rng.normal(50, 30, 50), rng.normal(0, 0.05, (50, real.shape[1] - 2)), rng.choice([-1.0, 1.0], 50)])
    return np.vstack([real[pick], odd.astype(np.float32)])


def test_compiled_combination_equals_voting_classifier(fitted):
    voting, (trained, served, _, dataset) = fitted
    X = _rows(dataset)
    voter = trained.estimator
    base = served.base_probabilities(X)
    score, vote = combine(base, served.weights, voting)
    np.testing.assert_array_equal(vote, voter.predict(X))
    if voting == "soft":
        np.testing.assert_allclose(score, voter.predict_proba(X)[:, 1], atol=1e-5)
        np.testing.assert_allclose(base, voter.transform(X)[:, 1::2], atol=1e-5)  # each base model's P(success)
    else:
        np.testing.assert_array_equal((base > 0.5).astype(int), voter.transform(X))  # each base model's vote
        with pytest.raises(AttributeError):
            voter.predict_proba(X)  # what the service's 422 for want="probability" stands for


def test_adaboost_graph_splits_exactly_like_scikit_learn(fitted):
    """Inputs ON the float32 roundings of the stumps' thresholds: the hardest rows for a compiled tree."""
    _, (trained, _, _, dataset) = fitted
    ada = trained.estimator.named_estimators_["ada_boost"]
    X = np.repeat(_rows(dataset, n=len(ada.estimators_))[: len(ada.estimators_)], 3, axis=0)
    for i, stump in enumerate(ada.estimators_):
        tree = stump.tree_
        if tree.node_count > 1:
            t32 = np.float32(tree.threshold[0])
            X[3 * i : 3 * i + 3, tree.feature[0]] = [np.nextafter(t32, -np.inf), t32, np.nextafter(t32, np.inf)]
    onnx = OnnxClassifier(*_session(adaboost_to_onnx(ada, X.shape[1])))
    np.testing.assert_allclose(onnx.predict_proba(X), ada.predict_proba(X)[:, 1], atol=1e-6)
    np.testing.assert_array_equal((onnx.predict_proba(X) > 0.5).astype(int), ada.predict(X))


def _session(onx):
    import onnxruntime as ort

    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, "input", "probabilities"


def test_training_results_report_every_model_next_to_the_baseline(fitted):
    voting, (_, _, path, _) = fitted
    results = json.loads((path / "reports" / "training_results.json").read_text())
    assert results["voting"] == voting
    assert set(results["base_models"]) == set(BASE_MODELS)
    for row in [results["ensemble"], *results["base_models"].values()]:
        assert {"accuracy", "precision", "recall", "f1", "roc_auc", "brier"} <= set(row)
        assert 0.5 < row["roc_auc"] < 1  # predictable market: some skill, not a leak
    assert results["weights"] == {"random_forest": 1.0, "gradient_boosting": 2.0, "ada_boost": 1.0}
    assert results["feature_columns"][-1] == "side" and len(results["feature_columns"]) == 10
    assert {"accuracy", "f1", "roc_auc", "brier"} <= set(results["baseline"])
    assert results["evaluation"]["scheme"] == "purged walk-forward" and results["evaluation"]["embargo_bars"] >= 10
    taken = results["at_confidence_threshold"]
    assert taken["confidence_threshold"] == 0.6 and 0 <= taken["take_rate"] <= 1
    reports = {p.name for p in (path / "reports").iterdir()}
    assert reports >= {"model_comparison.png", "metrics_by_model.png"}
    if voting == "soft":
        assert results["ensemble"]["brier"] < results["baseline"]["brier"]
        assert len(results["reliability"]["mean_predicted"]) >= 5 and "calibration.png" in reports
    else:  # a vote share is not a probability: no Brier score, no reliability curve
        assert results["ensemble"]["brier"] is None and results["reliability"] is None
        assert "calibration.png" not in reports


def test_hard_metrics_are_those_of_the_served_vote():
    """Weights [1, 2, 1] and only gradient boosting voting yes: share 0.5, a tie, so 'fail'."""
    y = np.array([0, 1, 0, 1, 1, 0])
    first_row = dict(zip(BASE_MODELS, (0.2, 0.9, 0.2)))
    oos = {name: np.array([np.nan, np.nan, first_row[name], 0.9, 0.1, 0.9]) for name in BASE_MODELS}
    config = EnsembleTrainConfig(voting="hard", weights=[1, 2, 1], evaluation={"n_splits": 2})
    metrics, reliability = evaluate_ensemble(y, oos, config, confidence_threshold=0.6)
    # served votes on rows 2..5: tie -> 0, 1, 0, 1 against outcomes 0, 1, 1, 0
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["precision"] == pytest.approx(0.5)
    assert metrics["predicted_positive_rate"] == pytest.approx(0.5)
    assert metrics["brier"] is None and reliability is None
    assert metrics["at_confidence_threshold"]["taken"] == 2  # shares 1.0 and 1.0 >= 0.6; the tie (0.5) is not taken


def test_no_skill_on_a_pure_random_walk(tmp_path):
    """Honesty: with nothing to learn, out-of-sample AUC must be a coin's (sd ~0.013 at this size)."""
    trained, *_ = _fit(tmp_path, predictability=0.0, symbols=SIX_SYMBOLS, start="2012-01-01")
    metrics = trained.info["metrics"]
    assert metrics["ensemble"]["evaluation"]["tested_samples"] > 1500
    assert abs(metrics["ensemble"]["roc_auc"] - 0.5) < 0.05, metrics["ensemble"]["roc_auc"]
    for name in BASE_MODELS:
        assert abs(metrics["base_models"][name]["roc_auc"] - 0.5) < 0.06, (name, metrics["base_models"][name]["roc_auc"])


def test_skill_where_there_is_some(tmp_path):
    """The counterpart that makes the random-walk test mean something: the same pipeline finds real signal."""
    trained, *_ = _fit(tmp_path, predictability=0.8, symbols=SIX_SYMBOLS, start="2012-01-01")
    ensemble = trained.info["metrics"]["ensemble"]
    assert ensemble["roc_auc"] > 0.55, ensemble["roc_auc"]
    assert ensemble["brier"] < ensemble["baseline"]["brier"]
