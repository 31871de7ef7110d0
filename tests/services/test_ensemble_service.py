"""The ensemble service over real HTTP: soft and hard ensembles with weights, votes, bad input."""
from __future__ import annotations

import httpx
import pytest

from kryptobot.models.ensemble.schemas import BASE_MODELS
from kryptobot.models.common.examples import classifier_example
from tests.live import wait_for_job

SMALL = {
    "activate": True,  # the tests need each version serving, better than the last or not
    "data": {"symbols": ["SYNA", "SYNB"], "start": "2017-01-01", "end": "2022-12-31"},
    "random_forest": {"n_estimators": 30},
    "gradient_boosting": {"n_estimators": 30},
    "ada_boost": {"n_estimators": 30},
    "evaluation": {"n_splits": 3},
}


@pytest.fixture(scope="module")
def client(start_server):
    server = start_server("services.ensemble.app:create_app")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def versions(client):
    out = {}
    for voting in ("hard", "soft"):  # soft last: it stays active
        resp = client.post("/train", json={**SMALL, "voting": voting, "weights": [1, 2, 1]})
        assert resp.status_code == 202, resp.text
        job = wait_for_job(client, resp.json()["id"])
        assert job["state"] == "succeeded", job
        out[voting] = job["versions"][0]
    return out


def test_soft_ensemble_gives_probability_and_base_votes(client, versions):
    resp = client.post("/predict", json=classifier_example())
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_version"] == versions["soft"]
    for pred in body["predictions"]:
        assert pred["voting"] == "soft"
        assert 0 <= pred["probability"] <= 1
        assert set(pred["base_models"]) == set(BASE_MODELS)
        probs = [pred["base_models"][m]["probability"] for m in BASE_MODELS]
        assert pred["probability"] == pytest.approx((probs[0] + 2 * probs[1] + probs[2]) / 4, abs=1e-6)
        assert pred["take"] == (pred["probability"] >= pred["confidence_threshold"])
        for m in BASE_MODELS:
            assert pred["base_models"][m]["vote"] == int(pred["base_models"][m]["probability"] > 0.5)
    # the features computed from bars, sent back as named features, score the same
    from_bars = body["predictions"][0]
    again = client.post("/predict", json={"instances": [{"side": "buy", "features": from_bars["features"]}]}).json()
    assert again["predictions"][0]["probability"] == pytest.approx(from_bars["probability"], abs=1e-6)
    for m in BASE_MODELS:
        assert again["predictions"][0]["base_models"][m]["probability"] == pytest.approx(from_bars["base_models"][m]["probability"], abs=1e-6)


def test_model_metadata_compares_every_model(client, versions):
    model = client.get("/model").json()["models"][0]
    assert model["version"] == versions["soft"]
    metrics = model["metrics"]
    assert set(metrics["base_models"]) == set(BASE_MODELS)
    assert {"accuracy", "roc_auc", "brier", "baseline", "at_confidence_threshold"} <= set(metrics["ensemble"])


def test_hard_ensemble_votes_and_refuses_probability(client, versions):
    assert client.post(f"/models/{versions['hard']}/activate").status_code == 200
    try:
        body = client.post("/predict", json=classifier_example()).json()
        pred = body["predictions"][0]
        assert pred["voting"] == "hard" and pred["probability"] is None
        votes = [pred["base_models"][m]["vote"] for m in BASE_MODELS]
        assert pred["vote_share"] == pytest.approx((votes[0] + 2 * votes[1] + votes[2]) / 4)
        assert pred["vote"] == int(pred["vote_share"] > 0.5)
        assert pred["take"] == (pred["vote_share"] >= pred["confidence_threshold"])
        assert client.post("/predict", json={**classifier_example(), "options": {"want": "vote"}}).status_code == 200
        resp = client.post("/predict", json={**classifier_example(), "options": {"want": "probability"}})
        assert resp.status_code == 422
        assert resp.json()["field"] == "options.want"
        assert "hard-voting" in resp.json()["detail"] and versions["hard"] in resp.json()["detail"]
    finally:
        client.post(f"/models/{versions['soft']}/activate")


def test_unknown_want_is_422(client, versions):
    resp = client.post("/predict", json={**classifier_example(), "options": {"want": "everything"}})
    assert resp.status_code == 422
    assert resp.json()["field"] == "options.want"


def test_reports(client, versions):
    results = client.get("/reports/training_results.json").json()
    assert results["voting"] == "soft" and set(results["base_models"]) == set(BASE_MODELS)
    for name in ("model_comparison.png", "metrics_by_model.png", "calibration.png"):
        resp = client.get(f"/reports/{name}")
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weights": [1, 2]}, "weights"),
        ({"weights": [1, -1, 1]}, "weights"),
        ({"weights": [0, 0, 0]}, "weights"),
        ({"voting": "majority"}, "voting"),
        ({"gradient_boosting": {"learning_rate": 0}}, "gradient_boosting.learning_rate"),
    ],
)
def test_bad_train_input_is_422_naming_the_field(client, change, field):
    resp = client.post("/train", json={**SMALL, **change})
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field
