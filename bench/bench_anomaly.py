"""Anomaly service latency, and the detector's event recall on real history.

Latency: trains a tiny autoencoder through the real service (uvicorn on a free port,
temp model dir), then prints p50/p99 of ``/predict`` with ``last_only`` (what the trader
sends each cycle: one window) over a keep-alive client, for a symbol the version was
trained on (its own threshold: one window is scored) and for one it was not (calibrated
on the instance's own windows: all of them are scored), the in-process ``CompiledModel``
call on one window, and Keras' ``model.predict`` on the same window for scale.
Target: /predict p50 under 10 ms (trained symbol).

Event recall (``--events``, or ``--events-only``): trains in process on the offline sample
data (AAPL, IBM, MSFT 2000-2013, GOOG 2004-2013), fitted on 2000-2007, and prints the
recall of the dated market shocks of :mod:`kryptobot.models.anomaly.events` next to the
z-score, IsolationForest and feature-magnitude baselines at the same flag rate, on the
holdout (2008-2013) and, labelled in-sample, on the whole history; and the training's
wall time. ``--quick`` uses the small network of the tests instead of the defaults.
"""
from __future__ import annotations

import argparse
import time

import httpx
import numpy as np

from common import report, start_service, time_calls, wait_for_job

N = 300
TRAIN = {
    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2019-01-01", "end": "2022-12-31"},
    "epochs": 2,
    "window": 20,
}
UNSEEN_BARS = 400  # what the trader loads per symbol by default


def latency() -> None:
    from kryptobot.data import get_provider
    from kryptobot.models.anomaly.data import min_bars
    from kryptobot.models.anomaly.runtime import AnomalyRuntime
    from kryptobot.schemas import Bars

    example = AnomalyRuntime.predict_example()
    one_window = {"instances": example["instances"], "options": {"last_only": True}}
    unseen = Bars.from_frame(get_provider("synthetic").get_bars("QQQ").tail(UNSEEN_BARS)).model_dump(mode="json")
    unseen_window = {"instances": [{"symbol": "QQQ", "bars": unseen}], "options": {"last_only": True}}
    server, workdir = start_service("services.anomaly.app:create_app")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            job = client.post("/train", json={**TRAIN, "activate": True}).json()
            job = wait_for_job(client, job["id"], timeout=600)
            assert job["state"] == "succeeded", job
            version = job["versions"][0]
            http_ms = report(
                "HTTP /predict, 1 instance, last window only",
                time_calls(lambda: client.post("/predict", json=one_window).raise_for_status(), N, warmup=30),
                10.0,
            )
            n_unseen = UNSEEN_BARS - min_bars(TRAIN["window"]) + 1
            report(f"HTTP /predict, unseen symbol, last of {n_unseen} windows",
                   time_calls(lambda: client.post("/predict", json=unseen_window).raise_for_status(), N // 3))
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


def event_recall(quick: bool) -> None:
    from datetime import date

    from kryptobot.data import load_bars
    from kryptobot.models.anomaly.events import shock_days
    from kryptobot.models.anomaly.schemas import AnomalyTrainConfig
    from kryptobot.models.anomaly.training import event_table, train_detector

    small = {"epochs": 10, "units": 32, "learning_rate": 3e-3} if quick else {}
    config = AnomalyTrainConfig(data={"source": "sample", "symbols": ["AAPL", "IBM", "MSFT", "GOOG"]},
                                holdout_start=date(2008, 1, 1), **small)
    bars = load_bars(config.data)
    started = time.perf_counter()
    detector = train_detector(bars, config, None, shock_days())
    seconds = time.perf_counter() - started
    metrics = detector.metadata()["metrics"]
    print(f"sample data, {sum(len(b) for b in bars.values())} bars, fit on 2000-2007: units {config.units}, "
          f"{metrics['epochs_run']} of {config.epochs} epochs, learning rate {config.learning_rate}: "
          f"trained and evaluated in {seconds:.1f} s")
    print(event_table(metrics["events"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", action="store_true", help="also print event recall on the sample data")
    parser.add_argument("--events-only", action="store_true", help="only the event recall")
    parser.add_argument("--quick", action="store_true", help="event recall with the tests' small network")
    args = parser.parse_args()
    if not args.events_only:
        latency()
    if args.events or args.events_only:
        event_recall(args.quick)


if __name__ == "__main__":
    main()
