"""The framework on its own: ``create_model_app`` serving the tiny runtime of
:mod:`tests.framework.tiny_runtime` over real HTTP (train, predict, activate, errors)."""
from __future__ import annotations

import httpx
import pytest

from tests.framework.tiny_runtime import TinyRuntime
from tests.live import wait_for_job

FACTORY = "tests.framework.tiny_runtime:create_app"
EXAMPLE = TinyRuntime.predict_example()
#: a point far on the positive side of the labels' rule (2*x1 - x2 > 0)
CLEARLY_POSITIVE = {"instances": [{"x1": 3.0, "x2": -3.0}]}


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(FACTORY)


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def train(client: httpx.Client, body: dict) -> dict:
    resp = client.post("/train", json=body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] in ("queued", "running")
    return wait_for_job(client, resp.json()["id"], timeout=60)


@pytest.fixture(scope="module")
def trained(client):
    """Two versions of different strength: v1 (little regularisation), then v2 active."""
    jobs = [train(client, {"seed": 0}), train(client, {"seed": 1, "n_samples": 200, "C": 0.01})]
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"], jobs
    return [v for j in jobs for v in j["versions"]]


def test_not_ready_before_training(client):
    # runs first in this module (pytest keeps file order): no model yet
    assert client.get("/health/live").status_code == 200
    resp = client.get("/health/ready")
    assert resp.status_code == 503
    assert resp.json()["error"] == "ModelNotReady"
    resp = client.post("/predict", json=EXAMPLE)
    assert resp.status_code == 503
    assert resp.json()["field"] == "model"
    assert client.get("/model").status_code == 503


def test_train_then_predict(client, trained):
    assert trained == ["tiny-v1", "tiny-v2"]
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model_versions"] == {"tiny": "tiny-v2"}
    body = client.post("/predict", json=EXAMPLE).json()
    assert body["model_version"] == "tiny-v2" and body["model_versions"] == {"tiny": "tiny-v2"}
    assert [p["label"] for p in body["predictions"]] == [1, 0]
    assert all(0 <= p["probability"] <= 1 for p in body["predictions"])
    model = client.get("/model").json()["models"][0]
    assert model["version"] == "tiny-v2" and model["features"] == ["x1", "x2"]
    # the labels follow a rule, so the held-out accuracy must beat the majority class
    assert model["metrics"]["accuracy"] > model["metrics"]["baseline"] + 0.2
    assert client.get("/reports/training_results.json").json() == model["metrics"]


def test_activate_an_older_version(client, trained):
    v2 = client.post("/predict", json=CLEARLY_POSITIVE).json()["predictions"][0]["probability"]
    resp = client.post("/models/tiny-v1/activate")
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == "tiny-v1" and resp.json()["active"] is True
    body = client.post("/predict", json=CLEARLY_POSITIVE).json()
    assert body["model_version"] == "tiny-v1"
    # v1 is the less regularised fit, hence more confident: the answer came from v1's weights
    assert body["predictions"][0]["probability"] > v2 > 0.5
    listed = client.get("/models").json()["models"]
    assert [(m["version"], m["active"]) for m in listed] == [("tiny-v1", True), ("tiny-v2", False)]
    assert client.get("/health/ready").json()["model_versions"] == {"tiny": "tiny-v1"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instances": [{"x1": "abc", "x2": 1.0}]}, "instances[0].x1"),
        ({"instances": [{"x1": 1.0}]}, "instances[0].x2"),
        ({"instances": [{"x1": 1.0, "x2": 2.0}, {"x1": 1.0, "x2": 2.0, "x3": 0.0}]}, "instances[1].x3"),
        ({"instances": []}, "instances"),
        ({"rows": []}, "instances"),
    ],
    ids=["not-a-number", "missing", "unknown", "empty", "no-instances"],
)
def test_bad_instance_is_422_naming_the_field(client, trained, body, field):
    resp = client.post("/predict", json=body)
    assert resp.status_code == 422, resp.text
    err = resp.json()
    assert err["error"] == "ValidationError"
    assert field in [e["field"] for e in err["errors"]], err
    assert err["request_id"]


@pytest.mark.parametrize(("body", "field"), [({"n_samples": 5}, "n_samples"), ({"colour": "blue"}, "colour")])
def test_bad_train_config_is_422_naming_the_field(client, body, field):
    resp = client.post("/train", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["field"] == field


def test_unknown_things_are_404(client, trained):
    resp = client.post("/models/tiny-v9/activate")
    assert resp.status_code == 404
    assert resp.json()["error"] == "NotFound" and resp.json()["field"] == "version"
    assert client.post("/models/garbage/activate").json()["field"] == "version"  # 422: malformed
    assert client.get("/train/ffffffffffff").json()["field"] == "job_id"
    assert client.get("/reports/nope.json").status_code == 404
    assert client.get("/no-such-route").status_code == 404


def test_second_job_conflicts_while_one_runs(client, trained, tmp_path):
    # the first job waits for a gate file that never appears, so it is surely still running
    first = client.post("/train", json={"gate": str(tmp_path / "never")})
    assert first.status_code == 202, first.text
    second = client.post("/train", json={})
    assert second.status_code == 409
    assert second.json()["error"] == "Conflict" and second.json()["field"] == "job"
    job_id = first.json()["id"]
    resp = client.delete(f"/train/{job_id}")
    assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
    assert client.delete(f"/train/{job_id}").status_code == 409
    assert client.post("/predict", json=EXAMPLE).json()["model_version"] == "tiny-v1"


def test_api_key_guards_mutations(start_server, tmp_path):
    keyed = start_server(FACTORY, env={"KRYPTOBOT_API_KEY": "k3y", "KRYPTOBOT_MODELS_DIR": str(tmp_path / "models")})
    with httpx.Client(base_url=keyed.url, timeout=30) as c:
        for headers in ({}, {"X-API-Key": "wrong"}):
            resp = c.post("/train", json={}, headers=headers)
            assert resp.status_code == 401
            assert resp.json()["error"] == "Unauthorized" and resp.json()["field"] == "X-API-Key"
        assert c.post("/models/tiny-v1/activate").status_code == 401
        # the right key gets past the guard to validation (and starts no job)
        assert c.post("/train", json={"n_samples": 5}, headers={"X-API-Key": "k3y"}).status_code == 422
        assert c.get("/health/ready").status_code == 503  # reads stay open


def test_metrics_and_docs(client, trained):
    client.post("/predict", json=EXAMPLE)
    text = client.get("/metrics").text
    counted = [ln for ln in text.splitlines() if ln.startswith('kryptobot_predictions_total{service="tiny"}')]
    assert counted and float(counted[0].split()[-1]) >= 2
    assert 'kryptobot_training_jobs_total{service="tiny",state="succeeded"}' in text
    assert 'kryptobot_active_model_info{line="tiny",service="tiny",version="tiny-v1"} 1.0' in text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/train", "/train/{job_id}", "/models/{version}/activate"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["TinyPredictRequest"]["examples"] == [EXAMPLE]


def test_a_bug_is_a_500_that_does_not_echo_the_exception(client, trained):
    from tests.framework.tiny_runtime import BUG_TRIGGER

    resp = client.post("/predict", json={"instances": [{"x1": BUG_TRIGGER, "x2": 0.0}]}, headers={"X-Request-ID": "bug-1"})
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"] == "InternalError" and body["request_id"] == "bug-1"
    assert "secret" not in resp.text and "RuntimeError" not in resp.text
    assert client.post("/predict", json={"instances": [{"x1": 1.0, "x2": 0.0}]}).status_code == 200  # still serving

