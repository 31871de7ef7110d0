"""The forecast service over real HTTP: train both lines (with progress), predict, reports, bad input."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from kryptobot.models.forecast.schemas import ForecastPrediction
from kryptobot.models.forecast.runtime import ForecastRuntime
from kryptobot.thresholds import FORECAST_GRID, FORECAST_NEVER
from tests.live import wait_for_job

pytestmark = pytest.mark.tf

FACTORY = "services.forecast.app:create_app"
SEQ, HORIZON = 20, 5
SMALL_TRAIN = {
    "activate": True,  # two epochs need not beat the naive forecast: the tests need a model serving
    "data": {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2017-01-01", "end": "2022-12-31"},
    "model_types": ["lstm", "gru"],
    "sequence_length": SEQ,
    "forecast_horizon": HORIZON,
    "epochs": 2,
    "batch_size": 64,
    "units": 16,
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(start_server):
    server = start_server(FACTORY)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def trained(client):
    """Both lines trained by one job; returns its last record and every record polling saw."""
    resp = client.post("/train", json=SMALL_TRAIN)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
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


def _instance(n: int = 3 * SEQ, **overrides) -> dict:
    bars = {k: list(v)[-n:] for k, v in ForecastRuntime.predict_example()["instances"][0]["bars"].items()}
    for key, (index, value) in overrides.items():
        bars[key][index] = value
    return {"symbol": "SYNA", "bars": bars}


def _post(client: httpx.Client, body: dict) -> httpx.Response:
    # json.dumps, not httpx's encoder: it must be able to send NaN
    return client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})


def test_not_ready_before_training(client):
    assert client.get("/health/ready").status_code == 503
    resp = client.post("/predict", json={"instances": [_instance()]})
    assert resp.status_code == 503 and resp.json()["error"] == "ModelNotReady"


def test_one_job_trains_a_version_per_model_type_with_progress(client, trained):
    record, seen = trained
    assert record["versions"] == ["lstm-v1", "gru-v1"]
    progress = [r["details"] for r in seen if r.get("details") and "epoch" in r["details"]]
    assert progress, f"no epoch progress seen while polling: {[r['message'] for r in seen]}"
    assert {d["model_type"] for d in progress} <= {"lstm", "gru"} and progress[-1]["epochs"] == SMALL_TRAIN["epochs"]
    for line in ("lstm", "gru"):
        metrics = record["metrics"][line]
        assert metrics["model_type"] == line and metrics["horizon"] == HORIZON
        for key in ("mse", "rmse", "mae", "r2", "test_loss", "skill"):
            assert key in metrics
        assert set(metrics["naive"]) >= {"mse", "rmse", "mae", "r2"}
        assert 0 < metrics["coverage"]["test_coverage"] <= 1
        sweep = metrics["confidence_sweep"]  # what an "auto" forecast confidence resolves from
        assert [r["threshold"] for r in sweep["rows"]] == list(FORECAST_GRID) and sweep["n"] == metrics["n"] // HORIZON
        assert sweep["auto"]["threshold"] in (*FORECAST_GRID, FORECAST_NEVER)
        # the gate's verdict, recorded although the tests activate whatever trains
        verdict = record["details"]["promotion"][f"{line}-v1"]
        assert verdict["metric"] == "skill" and verdict["promote"] == (metrics["skill"] >= 0) and verdict["activated"]


def test_models_and_reports(client, trained):
    models = {m["version"]: m for m in client.get("/models").json()["models"]}
    assert set(models) == {"lstm-v1", "gru-v1"} and all(m["active"] for m in models.values())
    assert models["lstm-v1"]["params"]["sequence_length"] == SEQ
    for kind in ("lstm", "gru"):
        assert {f"{kind}_evaluation_results.json", f"{kind}_training_history.png", f"{kind}_actual_vs_predicted.png",
                f"{kind}_forecast.png"} <= set(models[f"{kind}-v1"]["reports"])
    # the combined plot needs both models: it lives with the version trained last
    assert "combined_forecast.png" in models["gru-v1"]["reports"]
    for name in ("lstm_forecast.png", "combined_forecast.png", "gru_training_history.png"):
        png = client.get(f"/reports/{name}")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:8] == PNG
    results = client.get("/reports/lstm_evaluation_results.json").json()
    assert results["interval_coverage"]["0.9"]["nominal"] == 0.9


def test_predict_example_gives_paths_bounds_trend_and_confidence(client, trained):
    resp = client.post("/predict", json=ForecastRuntime.predict_example())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_versions"] == {"lstm": "lstm-v1", "gru": "gru-v1"}
    (pred,) = body["predictions"]
    ForecastPrediction.model_validate(pred)  # the framework sends the service's dicts unchecked
    assert pred["symbol"] == "SYNA" and pred["coverage"] == 0.9 and "sigmoid" in pred["confidence_method"]
    paths = pred["models"]
    assert set(paths) == {"lstm", "gru"}
    for path in [*paths.values(), pred["combined"]]:
        assert path["horizon"] == HORIZON and len(path["price"]) == len(path["lower"]) == len(path["upper"]) == HORIZON
        assert all(lo <= p <= hi for lo, p, hi in zip(path["lower"], path["price"], path["upper"]))
        assert 0 <= path["confidence"] <= 1
        assert path["trend"] == pytest.approx(path["price"][-1] / pred["last_close"] - 1)
    combined = pred["combined"]
    assert combined["model_version"] == "lstm-v1+gru-v1"
    for k in range(HORIZON):
        assert combined["price"][k] == pytest.approx((paths["lstm"]["price"][k] + paths["gru"]["price"][k]) / 2)
        assert combined["lower"][k] == pytest.approx(min(paths["lstm"]["lower"][k], paths["gru"]["lower"][k]))


def test_wider_coverage_gives_wider_intervals(client, trained):
    def width(coverage: float) -> float:
        path = _post(client, {"instances": [_instance()], "options": {"coverage": coverage}}).json()["predictions"][0]
        return path["models"]["gru"]["upper"][-1] - path["models"]["gru"]["lower"][-1]

    assert width(0.5) < width(0.8) < width(0.95)


def test_a_job_training_one_type_only_advances_that_line(client, trained):
    body = {**SMALL_TRAIN, "model_types": ["gru"], "sequence_length": SEQ + 10, "epochs": 1}
    job = wait_for_job(client, client.post("/train", json=body).json()["id"])
    assert job["state"] == "succeeded" and job["versions"] == ["gru-v2"], job
    models = {m["version"]: m for m in client.get("/models").json()["models"]}
    assert "combined_forecast.png" not in models["gru-v2"]["reports"]
    resp = _post(client, {"instances": [_instance()]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model_versions"] == {"lstm": "lstm-v1", "gru": "gru-v2"}
    # the longer window of gru-v2 now sets how many bars a request needs
    short = _post(client, {"instances": [_instance(n=SEQ + 1)]})
    assert short.status_code == 422 and f"need {SEQ + 11} bars" in short.json()["detail"]


@pytest.mark.parametrize(
    ("instance", "field_part", "words"),
    [
        (_instance(n=SEQ), "instances[0].bars", "too few"),
        (_instance(close=(-3, float("nan"))), "instances[0].bars.close", ""),
        (_instance(volume=(-1, float("inf"))), "instances[0].bars.volume", ""),
        (_instance(close=(-2, -1.0)), "instances[0].bars.close", "negative"),
        ({**_instance(), "symbol": "NOT A SYMBOL"}, "instances[0].symbol", "symbol"),
    ],
    ids=["fewer-bars-than-sequence", "nan-close", "inf-volume", "negative-close", "bad-symbol"],
)
def test_bad_predict_input_is_422_naming_the_field(client, trained, instance, field_part, words):
    resp = _post(client, {"instances": [instance]})
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["field"].startswith(field_part), err
    assert words in err["detail"].lower()


def test_unknown_coverage_is_422_naming_the_option(client, trained):
    resp = _post(client, {"instances": [_instance()], "options": {"coverage": 0.7}})
    assert resp.status_code == 422 and resp.json()["field"] == "options.coverage", resp.text


@pytest.mark.parametrize(
    ("body", "field_part"),
    [
        ({"model_types": ["transformer"]}, "model_types"),
        ({"model_types": []}, "model_types"),
        ({"sequence_length": 2}, "sequence_length"),
        ({"forecast_horizon": 0}, "forecast_horizon"),
        ({"epochs": 0}, "epochs"),
        ({"validation_fraction": 0.3, "calibration_fraction": 0.3, "test_fraction": 0.3}, "body"),
        # DataSpec's validator raises InvalidInput (not ValueError), so pydantic cannot prefix
        # the path: the field comes back as "symbols[0]" rather than "data.symbols[0]"
        ({"data": {"symbols": ["bad symbol!"]}}, "symbols"),
    ],
)
def test_bad_train_input_is_422_naming_the_field(client, body, field_part):
    resp = client.post("/train", json=body)
    assert resp.status_code == 422, resp.text
    assert field_part in resp.json()["field"]
