"""Forecast service latency: single-instance /predict over HTTP vs the in-process compiled calls.

Trains tiny LSTM and GRU forecasters through the real service (uvicorn on a free port,
temp model dir, the settings file's sequence_length and horizon): first the LSTM alone,
so /predict is timed with one active model, then the GRU, timed again with both. Then,
in-process: each model's ``CompiledModel`` call on one window, the whole
``ForecastRuntime.predict`` (bar validation, features, both models, combination) and
Keras' ``model.predict`` for scale.
Target: /predict p50 under 10 ms per active model.
"""
from __future__ import annotations

import httpx
import numpy as np

from common import report, start_service, time_calls, wait_for_job

N = 300
DATA = {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2022-12-31"}
TRAIN = {"data": DATA, "epochs": 1, "units": 32}


def main() -> None:
    from kryptobot.models.forecast.schemas import ForecastInstance
    from kryptobot.models.forecast.runtime import ForecastRuntime
    from kryptobot.settings import ForecastingSettings, Settings, load_settings_file
    from kryptobot.store import ModelStore

    seq = load_settings_file(ForecastingSettings, Settings().config_dir).sequence_length
    example = ForecastRuntime.predict_example()
    bars = {k: v[-(seq + 1):] for k, v in example["instances"][0]["bars"].items()}
    one = {"instances": [{"symbol": "SYNA", "bars": bars}]}
    server, workdir = start_service("services.forecast.app:create_app")
    http_ms = {}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for kinds in (["lstm"], ["gru"]):
                job = wait_for_job(client, client.post("/train", json={**TRAIN, "model_types": kinds}).json()["id"], timeout=900)
                assert job["state"] == "succeeded", job
                active = client.get("/health/ready").json()["model_versions"]
                http_ms[len(active)] = report(
                    f"HTTP /predict, {seq + 1} bars, {'+'.join(active)}",
                    time_calls(lambda: client.post("/predict", json=one).raise_for_status(), N, warmup=30),
                    10.0 * len(active),
                )
            versions = client.get("/health/ready").json()["model_versions"]
    finally:
        server.stop()

    service = ForecastRuntime(Settings(models_dir=workdir / "models"))
    store = ModelStore(workdir / "models", "forecast")
    models = {line: service.load_version(store, v) for line, v in versions.items()}
    compiled_ms = {}
    for line, model in models.items():
        model.warmup()
        window = np.random.default_rng(0).normal(size=(1, model.sequence_length, len(model.columns))).astype(np.float32)
        compiled_ms[line] = report(f"in-process CompiledModel ({line}), 1 window", time_calls(lambda: model.predict_returns(window), N))
    instances = [ForecastInstance.model_validate(one["instances"][0])]
    predict_ms = report("in-process ForecastRuntime.predict, both models",
                        time_calls(lambda: service.predict(models, instances, None), N))
    lstm = models["lstm"]
    window = np.zeros((1, lstm.sequence_length, len(lstm.columns)), dtype=np.float32)
    keras_ms = report("in-process keras model.predict (lstm), 1 window",
                      time_calls(lambda: lstm.keras_model.predict(window, verbose=0), 50, warmup=5))
    compiled_total = sum(compiled_ms.values())
    print(
        f"ratios: HTTP(1 model)/compiled(lstm) {http_ms[1] / compiled_ms['lstm']:.1f}x; "
        f"HTTP(2 models)/compiled(both) {http_ms[2] / compiled_total:.1f}x; "
        f"predict()/compiled(both) {predict_ms / compiled_total:.1f}x; "
        f"HTTP(2)/HTTP(1) {http_ms[2] / http_ms[1]:.2f}x; model.predict/compiled {keras_ms / compiled_ms['lstm']:.0f}x"
    )
    print(f"per active model over HTTP: {http_ms[2] / 2:.2f} ms (target < 10 ms)")


if __name__ == "__main__":
    main()
