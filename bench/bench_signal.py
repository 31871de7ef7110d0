"""Signal service latency: single-instance /predict over HTTP vs the in-process model call.

Prints p50/p99 for /predict with named features and with raw bars, the in-process ONNX
Runtime call, and scikit-learn's own predict_proba of the same 100-tree forest.
Target: /predict p50 under 2 ms.
"""
from __future__ import annotations

import httpx
import numpy as np
import pandas as pd

from common import report, report_feature_building, start_service, time_calls, wait_for_job

from kryptobot.models.common.examples import classifier_example

N = 500


def main() -> None:
    server, workdir = start_service("services.signal.app:create_app")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            job = client.post("/train", json={"model": {"n_estimators": 100, "max_depth": 8}}).json()
            job = wait_for_job(client, job["id"], timeout=600)
            assert job["state"] == "succeeded", job
            example = classifier_example()["instances"]
            by_features = {"instances": [example[1]]}
            by_bars = {"instances": [example[0]]}
            http_features = report("HTTP /predict, 1 instance, named features", time_calls(lambda: client.post("/predict", json=by_features).raise_for_status(), N), 2.0)
            # the model call is the same; the difference is the feature pipeline run on the bars
            report("HTTP /predict, 1 instance, raw bars", time_calls(lambda: client.post("/predict", json=by_bars).raise_for_status(), N))
            report_feature_building(example[0])
            version = job["versions"][0]
    finally:
        server.stop()

    from kryptobot.models.signal.runtime import SignalRuntime
    from kryptobot.settings import Settings
    from kryptobot.store import ModelStore

    store = ModelStore(workdir / "models", "signal")
    model = SignalRuntime(Settings(models_dir=workdir / "models")).load_version(store, version)
    row = np.random.default_rng(0).normal(size=(1, len(model.features) + 1)).astype(np.float32)
    onnx_ms = report("in-process ONNX Runtime predict_proba, 1 row", time_calls(lambda: model.predict_matrix(row), N))
    import joblib

    forest = joblib.load(store.verified_artifacts(version) / "forest.joblib")  # our own artifact, for the comparison only
    forest.set_params(n_jobs=1)
    named = pd.DataFrame(row, columns=forest.feature_names_in_)  # as it was fitted: no feature-name warning per call
    sk_ms = report("in-process scikit-learn predict_proba, 1 row", time_calls(lambda: forest.predict_proba(named), 100))
    agree = np.abs(model.predict_matrix(row) - forest.predict_proba(named)[:, 1]).max()
    print(f"ratios: sklearn/onnx {sk_ms / onnx_ms:.0f}x; HTTP/onnx {http_features / onnx_ms:.0f}x; max |onnx - sklearn| = {agree:.2e}")


if __name__ == "__main__":
    main()
