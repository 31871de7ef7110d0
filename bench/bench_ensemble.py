"""Ensemble service latency: single-instance /predict over HTTP vs in-process calls.

Trains the default soft ensemble (100 estimators per base model, weights [1, 2, 1]) on
the default synthetic data through the real service in a temporary models dir, then
prints p50/p99 for /predict (named features, raw bars), the compiled in-process path
(three ONNX base models + the weighted vote) with each base model's share, and
scikit-learn's VotingClassifier.predict_proba for one row. Target: /predict p50 under 3 ms.
"""
from __future__ import annotations

import shutil
import warnings

import httpx
import numpy as np
from common import report, report_feature_building, start_service, time_calls, wait_for_job

from kryptobot.models.common.examples import classifier_example

N = 500
warnings.filterwarnings("ignore")


def main() -> None:
    server, workdir = start_service("services.ensemble.app:create_app")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            job = client.post("/train", json={"voting": "soft", "weights": [1, 2, 1]}).json()
            job = wait_for_job(client, job["id"], timeout=900)
            assert job["state"] == "succeeded", job
            version = job["versions"][0]
            example = classifier_example()["instances"]
            by_features, by_bars = {"instances": [example[1]]}, {"instances": [example[0]]}
            http_ms = report("HTTP /predict, 1 instance, named features", time_calls(lambda: client.post("/predict", json=by_features).raise_for_status(), N), 3.0)
            # the model call is the same; the difference is the feature pipeline run on the bars
            report("HTTP /predict, 1 instance, raw bars", time_calls(lambda: client.post("/predict", json=by_bars).raise_for_status(), N))
            report_feature_building(example[0])
        server.stop()
        in_process(workdir / "models", version, http_ms)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def in_process(models_dir, version: str, http_ms: float) -> None:
    import joblib

    from kryptobot.models.ensemble.schemas import BASE_MODELS
    from kryptobot.models.ensemble.runtime import EnsembleRuntime
    from kryptobot.models.ensemble.model import combine
    from kryptobot.settings import Settings
    from kryptobot.store import ModelStore

    store = ModelStore(models_dir, "ensemble")
    model = EnsembleRuntime(Settings(models_dir=models_dir)).load_version(store, version)
    row = np.random.default_rng(0).normal(size=(1, len(model.features) + 1)).astype(np.float32)
    for name in BASE_MODELS:
        compiled = model._onnx[name]
        report(f"  in-process ONNX {name}, 1 row", time_calls(lambda compiled=compiled: compiled.predict_proba(row), N))
    compiled_ms = report("in-process ONNX base models + vote, 1 row", time_calls(lambda: combine(model.base_probabilities(row), model.weights, "soft"), N))
    voting = joblib.load(store.verified_artifacts(version) / "voting_classifier.joblib")
    for est in voting.estimators_:
        if "n_jobs" in est.get_params():
            est.set_params(n_jobs=1)  # one row: thread start-up would dominate
    sk_ms = report("in-process sklearn VotingClassifier, 1 row", time_calls(lambda: voting.predict_proba(row), 100))
    diff = abs(combine(model.base_probabilities(row), model.weights, "soft")[0][0] - voting.predict_proba(row)[0, 1])
    print(f"ratios: sklearn/compiled {sk_ms / compiled_ms:.0f}x; HTTP/compiled {http_ms / compiled_ms:.0f}x; |compiled - sklearn| = {diff:.1e}")


if __name__ == "__main__":
    main()
