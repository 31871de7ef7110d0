"""The promotion gate over real HTTP (the signal service): a version worse than the naive
baseline, or than the active version, is stored and not activated, and says why in
GET /models, GET /train/{id} and /health/ready; ``activate`` true / false overrides it.

The data decide, not the test: a pure random walk (predictability 0) holds nothing to
learn, so its out-of-sample ROC AUC is chance; on the default predictable market the
forest ranks signals well above it.
"""
from __future__ import annotations

import httpx
import pytest

from kryptobot.models.common.examples import classifier_example
from tests.live import wait_for_job

FACTORY = "services.signal.app:create_app"
DATA = {"source": "synthetic", "symbols": ["SYNA", "SYNB"], "start": "2016-01-01", "end": "2021-12-31"}
BODY = {"data": DATA, "model": {"n_estimators": 40, "max_depth": 5}, "evaluation": {"n_splits": 3}}
#: seed 7's random walk happens to rank its signals below chance out of sample (AUC 0.47)
BELOW_CHANCE = {**BODY, "data": {**DATA, "predictability": 0.0, "seed": 7}}
#: the default seed's random walk ranks them above chance by luck (AUC 0.55), far below a real model
LUCKY_WALK = {**BODY, "data": {**DATA, "predictability": 0.0}}


@pytest.fixture(scope="module")
def client(start_server):
    with httpx.Client(base_url=start_server(FACTORY).url, timeout=30) as c:
        yield c


def train(client: httpx.Client, body: dict) -> dict:
    resp = client.post("/train", json=body)
    assert resp.status_code == 202, resp.text
    job = wait_for_job(client, resp.json()["id"])
    assert job["state"] == "succeeded", job
    return job


def listed(client: httpx.Client) -> dict[str, dict]:
    return {m["version"]: m for m in client.get("/models").json()["models"]}


def test_a_first_version_below_the_baseline_is_stored_inactive_and_the_service_says_why(client):
    job = train(client, BELOW_CHANCE)  # activate: "if_better" is the default
    (version,) = job["versions"]
    verdict = job["details"]["promotion"][version]
    assert verdict["metric"] == "roc_auc" and verdict["candidate"] < verdict["baseline"] == 0.5
    assert not verdict["promote"] and not verdict["activated"] and verdict["champion_version"] is None
    assert "stored inactive" in job["message"] and "naive baseline" in job["message"]
    model = listed(client)[version]
    assert not model["active"] and model["promotion"]["reason"] == verdict["reason"]
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and version in ready.json()["detail"] and "naive baseline" in ready.json()["detail"]
    refused = client.post("/predict", json=classifier_example())
    assert refused.status_code == 503 and version in refused.json()["detail"]


def test_a_version_better_than_the_baseline_is_promoted(client):
    job = train(client, BODY)
    (version,) = job["versions"]
    verdict = job["details"]["promotion"][version]
    assert verdict["promote"] and verdict["activated"] and verdict["candidate"] > 0.55, verdict
    assert client.get("/model").json()["models"][0]["version"] == version
    assert client.get("/health/ready").status_code == 200


def test_a_no_skill_version_after_a_good_one_is_stored_and_not_activated(client):
    champion = client.get("/model").json()["models"][0]
    job = train(client, LUCKY_WALK)
    (version,) = job["versions"]
    verdict = job["details"]["promotion"][version]
    # it may even beat the base rate by luck: what stops it is the active version
    assert verdict["champion_version"] == champion["version"] and verdict["champion"] == champion["metrics"]["roc_auc"]
    assert verdict["candidate"] < verdict["champion"] - verdict["tolerance"] and not verdict["activated"]
    assert champion["version"] in verdict["reason"] and "tolerance" in verdict["reason"]
    models = listed(client)
    assert not models[version]["active"] and models[version]["promotion"]["promote"] is False
    assert models[champion["version"]]["active"]
    assert client.get("/model").json()["models"][0]["version"] == champion["version"]


def test_activate_true_and_false_override_the_verdict_and_still_record_it(client):
    champion = client.get("/model").json()["models"][0]["version"]
    forced = train(client, {**LUCKY_WALK, "activate": True})
    (version,) = forced["versions"]
    verdict = forced["details"]["promotion"][version]
    assert verdict["activated"] and not verdict["promote"] and "activated on request" in verdict["outcome"]
    assert client.get("/model").json()["models"][0]["version"] == version
    # the operator's own switch back (POST /models/{v}/activate) is a forced activation too
    assert client.post(f"/models/{champion}/activate").status_code == 200
    kept = train(client, {**BODY, "activate": False})
    (stored,) = kept["versions"]
    assert not kept["details"]["promotion"][stored]["activated"] and "activate=false" in kept["message"]
    assert client.get("/model").json()["models"][0]["version"] == champion
    assert listed(client)[stored]["promotion"]["activate"] is False


def test_activate_must_be_if_better_or_a_boolean(client):
    resp = client.post("/train", json={**BODY, "activate": "sometimes"})
    assert resp.status_code == 422 and resp.json()["field"].startswith("activate"), resp.text
