"""The authorisation matrix: every route of the trader and of a model service, with no key,
a wrong key and the right key. Every route that changes state needs the key; every other
route (GETs, and POST /predict) is a read."""
from __future__ import annotations

import httpx
import pytest

from services.table import spec
from tests.live import free_port

KEY = "authz-key"
CALLS = {"no key": {}, "wrong key": {"X-API-Key": "not-it"}}


@pytest.fixture(scope="module", params=["trader", "signal"])
def service(request, start_server, tmp_path_factory, redis_url):
    env = {"KRYPTOBOT_API_KEY": KEY}
    if request.param == "trader":
        state = tmp_path_factory.mktemp("authz-trader")
        dead = f"http://127.0.0.1:{free_port()}"
        env |= {f"KRYPTOBOT_{n.upper()}_URL": dead for n in ("signal", "ensemble", "anomaly", "forecast")}
        env |= {"KRYPTOBOT_REDIS_URL": redis_url, "KRYPTOBOT_LEDGER_PATH": str(state / "l.sqlite"),
                "KRYPTOBOT_REPORTS_DIR": str(state / "r"), "KRYPTOBOT_TRADER_SETTINGS__WATCHLIST": '["SPY"]'}
    server = start_server(spec(request.param).app, env=env)
    return request.param, server.url, httpx.get(f"{server.url}/openapi.json").json()


def _operations(openapi: dict):
    for path, item in openapi["paths"].items():
        for method, op in item.items():
            concrete = path.replace("{job_id}", "0123abcd").replace("{version}", "signal-v1").replace("{name}", "x.json")
            yield method.upper(), path, concrete, op


def test_every_mutation_needs_the_key_and_every_read_is_open(service):
    name, url, openapi = service
    mutations = 0
    for method, path, concrete, op in _operations(openapi):
        if path.startswith("/dashboard/api"):
            continue  # the proxy forwards the caller's key: the model service decides
        if method == "GET" or path == "/predict":  # scoring is a read that needs a body
            assert not op.get("security"), f"{name} {method} {path} is a read: it must not need the key"
            continue
        mutations += 1
        assert op.get("security"), f"{name} {method} {path} changes state but does not declare the key"
        for who, headers in CALLS.items():
            resp = httpx.request(method, url + concrete, json={}, headers=headers, timeout=60)
            assert resp.status_code == 401, f"{name} {method} {path} with {who}: {resp.status_code} {resp.text[:200]}"
            assert resp.json()["field"] == "X-API-Key"
        right = httpx.request(method, url + concrete, json={}, headers={"X-API-Key": KEY}, timeout=120)
        assert right.status_code != 401, f"{name} {method} {path} refused the right key"
    assert mutations >= (2 if name == "trader" else 4)
