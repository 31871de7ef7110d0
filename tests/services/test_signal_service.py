"""The signal service over real HTTP: train, predict, versions, activation, bad input, faults."""
from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import httpx
import pytest

from kryptobot.models.common.examples import classifier_example
from tests.live import wait_for_job

API_KEY = "test-key"
FACTORY = "services.signal.app:create_app"
SMALL_TRAIN = {
    "activate": True,  # the tests need each version serving, better than the last or not
    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2021-12-31"},
    "model": {"n_estimators": 40, "max_depth": 5},
    "evaluation": {"n_splits": 3},
}
AUTH = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(FACTORY, env={"KRYPTOBOT_API_KEY": API_KEY, "KRYPTOBOT_MAX_BATCH": "50"})


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def trained(client):
    """Two versions: v1 then v2 (different forest size), v2 active."""
    versions = []
    for n_estimators in (40, 60):
        body = {**SMALL_TRAIN, "model": {"n_estimators": n_estimators, "max_depth": 5}}
        resp = client.post("/train", json=body, headers=AUTH)
        assert resp.status_code == 202, resp.text
        job = wait_for_job(client, resp.json()["id"])
        assert job["state"] == "succeeded", job
        versions.extend(job["versions"])
    return versions


def test_not_ready_before_training(client):
    # runs first in this module (pytest keeps file order): no model yet
    assert client.get("/health/live").status_code == 200
    resp = client.get("/health/ready")
    assert resp.status_code == 503
    assert "train" in resp.json()["detail"]
    resp = client.post("/predict", json=classifier_example())
    assert resp.status_code == 503
    assert resp.json()["error"] == "ModelNotReady"


def test_train_needs_api_key(client):
    resp = client.post("/train", json=SMALL_TRAIN)
    assert resp.status_code == 401
    assert resp.json()["field"] == "X-API-Key"


def test_train_reports_and_metrics(client, trained):
    assert trained == ["signal-v1", "signal-v2"]
    assert client.get("/health/ready").status_code == 200
    model = client.get("/model").json()["models"][0]
    assert model["version"] == "signal-v2"
    metrics = model["metrics"]
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "brier", "base_rate", "baseline"):
        assert key in metrics
    assert set(model["reports"]) >= {"training_results.json", "feature_importance.png", "confusion_matrix.png"}
    results = client.get("/reports/training_results.json").json()
    assert results["training_samples"] > 100
    assert 0 < results["positive_outcomes"] < results["training_samples"]
    png = client.get("/reports/feature_importance.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(model["artifacts"]) >= 2 and all(len(h) == 64 for h in model["artifacts"].values())


def test_predict_from_bars_and_features(client, trained):
    resp = client.post("/predict", json=classifier_example())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == "signal-v2"
    assert len(body["predictions"]) == 2
    from_bars, from_features = body["predictions"]
    assert 0.0 <= from_bars["probability"] <= 1.0
    assert set(from_bars["features"]) == set(from_features["features"])
    # the features the service computed from bars, sent back as named features, score the same
    again = client.post("/predict", json={"instances": [{"side": "buy", "features": from_bars["features"]}]}).json()
    assert math.isclose(again["predictions"][0]["probability"], from_bars["probability"], abs_tol=1e-6)


def test_versions_and_activation(client, trained):
    listed = client.get("/models").json()["models"]
    assert [m["version"] for m in listed] == ["signal-v1", "signal-v2"]
    assert [m["active"] for m in listed] == [False, True]
    resp = client.post("/models/signal-v1/activate", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert client.post("/predict", json=classifier_example()).json()["model_version"] == "signal-v1"
    assert client.post("/models/signal-v9/activate", headers=AUTH).status_code == 404
    assert client.post("/models/signal-v2/activate").status_code == 401
    assert client.post("/models/signal-v2/activate", headers=AUTH).status_code == 200
    assert client.post("/predict", json=classifier_example()).json()["model_version"] == "signal-v2"


def _bars_instance(n=60, **overrides):
    example = classifier_example()["instances"][0]
    bars = {k: list(v)[-n:] for k, v in example["bars"].items()}
    for key, (index, value) in overrides.items():
        bars[key][index] = value
    return {"side": "buy", "bars": bars}


FEATURES = classifier_example()["instances"][1]["features"]


@pytest.mark.parametrize(
    ("body", "field_part"),
    [
        ({"instances": []}, "instances"),
        ({"instances": [{"features": {**FEATURES, "rsi": float("nan")}}]}, "instances[0].features.rsi"),
        ({"instances": [{"features": {**FEATURES, "rsi": float("inf")}}]}, "instances[0].features.rsi"),
        ({"instances": [{"features": {**FEATURES, "colour": 1.0}}]}, "instances[0].features"),
        ({"instances": [{"features": {k: v for k, v in FEATURES.items() if k != "atr"}}]}, "instances[0].features"),
        ({"instances": [{"features": FEATURES, "bars": _bars_instance()["bars"]}]}, "instances[0]"),
        ({"instances": [_bars_instance(n=10)]}, "instances[0].bars"),
        ({"instances": [_bars_instance(close=(-1, 0.0))]}, "instances[0].bars.close"),
        ({"instances": [_bars_instance(close=(-1, float("nan")))]}, "instances[0].bars.close"),
        ({"instances": [{"side": "hold", "features": FEATURES}]}, "instances[0].side"),
        ({"instances": [{"features": FEATURES}] * 51}, "instances"),
        ({"instances": [{"symbol": "NOT A SYMBOL", "features": FEATURES}]}, "instances[0].symbol"),
    ],
    ids=["empty", "nan", "inf", "unknown-name", "missing-name", "both-inputs", "too-few-bars", "zero-price", "nan-bar", "bad-side", "oversized", "bad-symbol"],
)
def test_bad_predict_input_is_422_naming_the_field(client, trained, body, field_part):
    resp = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["field"].startswith(field_part), err
    assert err["detail"]


@pytest.mark.parametrize(
    ("body", "field_part"),
    [
        ({"data": {"symbols": ["bad symbol!"]}}, "data.symbols"),
        ({"data": {"source": "nowhere"}}, "data.source"),
        ({"model": {"n_estimators": 0}}, "model.n_estimators"),
        ({"features": ["rsi", "astrology"]}, "features"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_train_input_is_4xx_naming_the_field(client, body, field_part):
    resp = client.post("/train", json=body, headers=AUTH)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"].startswith(field_part)


def test_unknown_version_and_report(client, trained):
    assert client.get("/reports/nope.png").status_code == 404
    assert client.get("/reports/../../etc/passwd").status_code in (404, 422)
    assert client.get("/train/ffffffffffff").status_code == 404
    assert client.post("/models/garbage/activate", headers=AUTH).status_code == 422


def test_second_job_conflicts_and_killed_job_leaves_model_serving(server, client, trained):
    big = {**SMALL_TRAIN, "model": {"n_estimators": 1500, "max_depth": 12}}
    first = client.post("/train", json=big, headers=AUTH)
    assert first.status_code == 202
    second = client.post("/train", json=big, headers=AUTH)
    assert second.status_code == 409
    assert second.json()["error"] == "Conflict"
    job_id = first.json()["id"]
    # kill the training process the hard way (as the OOM killer would); its pid is in the job file
    job_file = Path(server.env["KRYPTOBOT_MODELS_DIR"]) / "signal" / "jobs" / f"{job_id}.json"
    os.kill(json.loads(job_file.read_text())["pid"], signal.SIGKILL)
    record = wait_for_job(client, job_id, timeout=60)
    assert record["state"] == "failed"
    assert "exited" in record["error"]
    resp = client.post("/predict", json=classifier_example())
    assert resp.status_code == 200
    assert resp.json()["model_version"] == "signal-v2"
    assert [m["version"] for m in client.get("/models").json()["models"]] == ["signal-v1", "signal-v2"]


def test_cancel_job(client, trained):
    big = {**SMALL_TRAIN, "model": {"n_estimators": 1500, "max_depth": 12}}
    job_id = client.post("/train", json=big, headers=AUTH).json()["id"]
    resp = client.delete(f"/train/{job_id}", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json()["state"] == "cancelled"
    assert client.post("/predict", json=classifier_example()).json()["model_version"] == "signal-v2"


def test_feature_selection_creates_child_version(client, trained):
    resp = client.post("/feature-selection", json={"data": SMALL_TRAIN["data"], "rfecv": True, "activate": True}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    job = wait_for_job(client, resp.json()["id"])
    assert job["state"] == "succeeded", job
    version = job["versions"][0]
    meta = [m for m in client.get("/models").json()["models"] if m["version"] == version][0]
    assert meta["parent"] == "signal-v2"
    assert meta["active"]
    names = set(meta["reports"])
    assert {"feature_importance.png", "rfecv_scores.png", "training_results.json"} <= names
    assert any(n.startswith("model_comparison_") for n in names)
    comparison = next(n for n in names if n.startswith("comparison_"))
    data = client.get(f"/reports/{comparison}").json()
    assert data["original"]["metrics"]["f1"] is not None and data["optimized"]["features"]


def test_metrics_endpoint(client, trained):
    text = client.get("/metrics").text
    assert "kryptobot_http_requests_total" in text
    assert 'kryptobot_active_model_info{' in text
    assert "kryptobot_predictions_total" in text


def test_restart_keeps_active_model(server, client, trained):
    active = client.get("/model").json()["models"][0]["version"]
    server.stop()
    server.start()
    with httpx.Client(base_url=server.url) as fresh:
        assert fresh.get("/health/ready").status_code == 200
        assert fresh.get("/model").json()["models"][0]["version"] == active
