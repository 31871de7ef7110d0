"""Anomaly service latency: single-window /predict over HTTP vs the in-process compiled call.

Trains a tiny autoencoder through the real service (uvicorn on a free port, temp model
dir), then prints p50/p99 of ``/predict`` with ``last_only`` (what the trader sends each
cycle: one window) over a keep-alive client, the in-process ``CompiledModel`` call on one
window, and Keras' ``model.predict`` on the same window for scale.
Target: /predict p50 under 10 ms.
"""
from __future__ import annotations

import httpx
import numpy as np

from common import report, start_service, time_calls, wait_for_job

N = 300
TRAIN = {
    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2019-01-01", "end": "2022-12-31"},
    "epochs": 2,
    "window": 20,
}


def main() -> None:
    from kryptobot.models.anomaly.runtime import AnomalyRuntime
    from kryptobot.models.anomaly.data import min_bars

    example = AnomalyRuntime.predict_example()
    one_window = {"instances": example["instances"], "options": {"last_only": True}}
    server, workdir = start_service("services.anomaly.app:create_app")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            job = client.post("/train", json=TRAIN).json()
            job = wait_for_job(client, job["id"], timeout=600)
            assert job["state"] == "succeeded", job
            version = job["versions"][0]
            http_ms = report(
                "HTTP /predict, 1 instance, last window only",
                time_calls(lambda: client.post("/predict", json=one_window).raise_for_status(), N, warmup=30),
                10.0,
            )
            n_windows = len(example["instances"][0]["bars"]["close"]) - min_bars(TRAIN["window"]) + 1
            report(f"HTTP /predict, 1 instance, all {n_windows} windows",
                   time_calls(lambda: client.post("/predict", json=example).raise_for_status(), N // 3))
    finally:
        server.stop()

    from kryptobot.settings import Settings
    from kryptobot.store import ModelStore

    store = ModelStore(workdir / "models", "anomaly")
    detector = AnomalyRuntime(Settings(models_dir=workdir / "models")).load_version(store, version)
    detector.warmup()
    window = np.random.default_rng(0).normal(size=(1, detector.window, len(detector.scaler.mean))).astype(np.float32)
    compiled_ms = report("in-process CompiledModel (tf.function), 1 window", time_calls(lambda: detector.reconstruction_errors(window), N))
    keras_ms = report("in-process keras model.predict, 1 window", time_calls(lambda: detector.keras_model.predict(window, verbose=0), 50, warmup=5))
    print(f"ratios: HTTP/compiled {http_ms / compiled_ms:.1f}x; model.predict/compiled {keras_ms / compiled_ms:.0f}x")


if __name__ == "__main__":
    main()
