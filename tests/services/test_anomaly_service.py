"""The anomaly service over real HTTP: train (with progress), predict, reports, bad input."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from kryptobot.models.anomaly.runtime import AnomalyRuntime
from kryptobot.models.anomaly.data import min_bars
from tests.live import wait_for_job

pytestmark = pytest.mark.tf

FACTORY = "services.anomaly.app:create_app"
WINDOW = 20
MIN_BARS = min_bars(WINDOW)
SMALL_TRAIN = {
    "activate": True,  # the tests need a model serving, better than the baseline or not
    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2018-01-01", "end": "2022-12-31"},
    "epochs": 3,
    "batch_size": 64,
    "window": WINDOW,
    "threshold_percentile": 99.0,
}


@pytest.fixture(scope="module")
def client(start_server):
    server = start_server(FACTORY)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def trained(client):
    """One version trained over HTTP; returns the job's last record and what polling saw."""
    resp = client.post("/train", json=SMALL_TRAIN)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    # while it runs, a second job is refused
    second = client.post("/train", json=SMALL_TRAIN)
    assert second.status_code == 409, second.text
    assert second.json()["error"] == "Conflict"
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        record = client.get(f"/train/{job_id}").json()
        seen.append(record)
        if record["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert record["state"] == "succeeded", record
    return record, seen


def _instance(n: int = MIN_BARS + 20, **overrides) -> dict:
    bars = {k: list(v)[-n:] for k, v in AnomalyRuntime.predict_example()["instances"][0]["bars"].items()}
    for key, (index, value) in overrides.items():
        bars[key][index] = value
    return {"symbol": "SYNA", "bars": bars}


def test_not_ready_before_training(client):
    # first test of the module: nothing trained yet
    assert client.get("/health/ready").status_code == 503
    resp = client.post("/predict", json=AnomalyRuntime.predict_example())
    assert resp.status_code == 503 and resp.json()["error"] == "ModelNotReady"


def test_training_shows_epochs_and_metrics(client, trained):
    record, seen = trained
    assert record["versions"] == ["anomaly-v1"]
    epochs = [r["details"]["epoch"] for r in seen if r.get("details") and "epoch" in r["details"]]
    assert epochs, f"no epoch progress seen while polling: {[r['message'] for r in seen]}"
    assert record["details"]["epochs"] == SMALL_TRAIN["epochs"] and record["details"]["loss"] > 0
    metrics = record["metrics"]["anomaly"]
    assert metrics["threshold"] > 0 and metrics["training_samples"] > 500
    detection = metrics["detection"]
    assert {"autoencoder", "zscore", "isolation_forest", "matching_rule", "flag_rate_rule"} <= set(detection)
    assert set(metrics["calibration"]["symbol_thresholds"]) == {"SYNA", "SYNB"}
    assert metrics["events"] is None  # the synthetic market has planted anomalies, not dated shocks


def test_models_and_reports(client, trained):
    models = client.get("/models").json()["models"]
    assert [(m["version"], m["active"]) for m in models] == [("anomaly-v1", True)]
    assert set(models[0]["reports"]) >= {
        "training_results.json", "reconstruction_error_distribution.png", "training_history.png",
        "SYNA_anomalies.png", "SYNB_anomalies.png",
    }
    assert set(models[0]["artifacts"]) >= {"autoencoder.keras", "pipeline.json"}
    png = client.get("/reports/training_history.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    results = client.get("/reports/training_results.json").json()
    for key in ("threshold", "training_samples", "final_loss", "final_val_loss", "detection"):
        assert key in results


def test_predict_example_scores_every_window(client, trained):
    resp = client.post("/predict", json=AnomalyRuntime.predict_example())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "anomaly-v1"
    (pred,) = body["predictions"]
    n_bars = len(AnomalyRuntime.predict_example()["instances"][0]["bars"]["close"])
    cols = pred["windows"]
    assert pred["symbol"] == "SYNA" and pred["window"] == WINDOW
    assert len(cols["timestamp"]) == len(cols["error"]) == len(cols["anomaly"]) == n_bars - MIN_BARS + 1
    assert pred["calibration"] == "symbol"  # SYNA was trained on: its own threshold
    for error, score, flag in zip(cols["error"], cols["score"], cols["anomaly"]):
        assert score == pytest.approx(error / pred["threshold"], rel=1e-5)
        assert flag == (error > pred["threshold"])
    assert pred["anomalies"] == [t for t, f in zip(cols["timestamp"], cols["anomaly"]) if f]
    assert pred["score"] == cols["score"][-1] and pred["anomaly"] == cols["anomaly"][-1]


def test_last_only_scores_the_latest_window_the_same(client, trained):
    full = client.post("/predict", json={"instances": [_instance()]}).json()["predictions"][0]
    last = client.post("/predict", json={"instances": [_instance(), _instance(n=MIN_BARS)], "options": {"last_only": True}})
    assert last.status_code == 200, last.text
    for pred in last.json()["predictions"]:
        assert len(pred["windows"]["error"]) == 1
        assert pred["windows"]["timestamp"][0] == full["windows"]["timestamp"][-1]
        assert pred["windows"]["error"][0] == pytest.approx(full["windows"]["error"][-1], rel=1e-4)


def test_a_symbol_not_trained_on_says_which_threshold_judged_it(client, trained):
    pooled = client.get("/reports/training_results.json").json()["calibration"]["pooled_threshold"]
    resp = client.post("/predict", json={"instances": [{**_instance(), "symbol": "QQQ"}, {"bars": _instance()["bars"]}]})
    assert resp.status_code == 200, resp.text
    for pred in resp.json()["predictions"]:  # 40 windows: too few to calibrate on, so the pooled threshold
        assert pred["calibration"] == "pooled" and pred["threshold"] == pytest.approx(pooled)


@pytest.mark.parametrize(
    ("instance", "field_part", "words"),
    [
        (_instance(n=MIN_BARS - 1), "instances[0].bars", "too few"),
        (_instance(close=(-3, float("nan"))), "instances[0].bars.close", ""),
        (_instance(close=(-3, 0.0)), "instances[0].bars.close", "negative"),
        (_instance(low=(5, -2.0)), "instances[0].bars.low", "negative"),
        (_instance(high=(-1, 1.0)), "instances[0].bars.high", "high below low"),
        (_instance(volume=(1, -5.0)), "instances[0].bars.volume", "negative"),
        ({**_instance(), "symbol": "NOT A SYMBOL"}, "instances[0].symbol", "symbol"),
    ],
    ids=["too-few-bars", "nan-close", "zero-close", "negative-low", "high-below-low", "negative-volume", "bad-symbol"],
)
def test_bad_predict_input_is_422_naming_the_field(client, trained, instance, field_part, words):
    body = json.dumps({"instances": [instance]})  # json.dumps, not httpx: it must be able to send NaN
    resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["field"].startswith(field_part), err
    assert words in err["detail"].lower()


@pytest.mark.parametrize(
    ("body", "field_part"),
    [
        ({"epochs": 0}, "epochs"),
        ({"window": 2}, "window"),
        ({"threshold_percentile": 100}, "threshold_percentile"),
        ({"window": 10, "score_bars": 11}, "body"),
        ({"data": {"symbols": ["bad symbol!"]}}, "data.symbols"),
    ],
)
def test_bad_train_input_is_422_naming_the_field(client, body, field_part):
    resp = client.post("/train", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith(field_part)


def test_too_little_training_data_fails_the_job_with_a_reason(client, trained):
    body = {**SMALL_TRAIN, "data": {**SMALL_TRAIN["data"], "start": "2022-11-01"}}
    job = wait_for_job(client, client.post("/train", json=body).json()["id"])
    assert job["state"] == "failed" and "too few" in job["error"]
    assert client.get("/model").json()["models"][0]["version"] == "anomaly-v1"
