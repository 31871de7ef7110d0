"""Every service's OpenAPI tested against the service itself, over real HTTP.

schemathesis (its ``st run`` command) sends each operation of ``/openapi.json`` generated
requests, valid and not, boundary values, and methods the path does not have. No answer may
be a 500, nor carry a status, a content type, a header or a body its operation does not
declare, and a 405 must say ``Allow``. Few examples per operation keep the file to a minute
or two: enough to reach every operation and every error branch of the framework.

The model services run with an API key, so their generated training requests are 401s
rather than dozens of training jobs; the signal service has one quick model (trained here,
with the key) so its 200s are checked too; the other three have none and answer 503 where
a model is needed, which their spec declares. The trader runs against unreachable model
services (it decides on the technical signal) with a one-symbol watchlist, so that its
generated backtests are quick; what the budget leaves out is in ``tests/openapi_hooks.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from services.table import SERVICES, spec
from tests.live import ROOT, free_port, wait_for_job

API_KEY = "openapi-test-key"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "allow_header_conformance",
]
# 503 is an honest answer (no active model), checked like any other against the statuses
# each operation declares; a 500 never is
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2XX", "3XX", "4XX", "503"]
"""
EXAMPLES_PER_OPERATION = 5
BUDGET_SECONDS = 120  # per service, on a busy machine; a typical run takes a fifth of it


def _trader_env(redis_url: str, tmp_path) -> dict[str, str]:
    dead = {s.url_env: f"http://127.0.0.1:{free_port()}" for s in SERVICES if s.is_model_service}
    return {
        **dead,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-openapi:forecast",
        "KRYPTOBOT_TRADER_SETTINGS__WATCHLIST": json.dumps(["SPY"]),
    }


def _train(url: str, body: dict) -> None:
    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": API_KEY}) as client:
        resp = client.post("/train", json=body)
        assert resp.status_code == 202, resp.text
        assert wait_for_job(client, resp.json()["id"])["state"] == "succeeded"


def _schemathesis(url: str, tmp_path) -> subprocess.CompletedProcess:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{url}/openapi.json", "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing", "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--workers", "1", "--suppress-health-check", "all", "--generation-database", "none",
        "--request-timeout", "30",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.openapi_hooks"}
    return subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BUDGET_SECONDS)


@pytest.mark.parametrize("name", [s.name for s in SERVICES])
def test_every_answer_is_declared_by_the_openapi(name, start_server, redis_url, tmp_path):
    row = spec(name)
    env = {"KRYPTOBOT_API_KEY": API_KEY} if row.is_model_service else _trader_env(redis_url, tmp_path)
    server = start_server(row.app, env=env)
    try:
        if name == "signal":
            _train(server.url, row.training_body(quick=True))
        result = _schemathesis(server.url, tmp_path)
    finally:
        server.stop()  # one service at a time: the next starts on a quieter machine
    assert result.returncode == 0, f"{result.stdout[-8000:]}\n{result.stderr[-2000:]}"


@pytest.fixture(scope="module")
def untrained(start_server):
    with httpx.Client(base_url=start_server(spec("signal").app, env={"KRYPTOBOT_API_KEY": API_KEY}).url, timeout=30) as client:
        yield client


def test_405_says_which_methods_the_path_has(untrained):
    resp = untrained.put("/train/abc123")
    assert resp.status_code == 405
    assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "DELETE"}
    body = resp.json()
    assert body["error"] == "HTTPError" and body["request_id"] == resp.headers["x-request-id"]


def test_errors_are_documented_as_the_error_body_they_are(untrained):
    openapi = untrained.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(openapi)
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            errors = {s: r["content"]["application/json"]["schema"] for s, r in operation["responses"].items() if s >= "400"}
            assert "500" in errors, (method, path)
            if (method, path) == ("get", "/health/ready"):  # its own body, which says it is not ready
                assert errors.pop("503") == {"$ref": "#/components/schemas/NotReadyBody"}
            assert all(schema == error_body for schema in errors.values()), (method, path, errors)
    assert {"401", "409", "422"} <= set(openapi["paths"]["/train"]["post"]["responses"])
    assert "422" in openapi["paths"]["/predict"]["post"]["responses"]
    declared = openapi["components"]["schemas"]["ErrorBody"]
    body = untrained.post("/predict", json={"instances": []}).json()
    assert set(declared["required"]) <= set(body) <= set(declared["properties"])
    assert body["field"] == "instances" and body["errors"][0]["field"] == "instances"
