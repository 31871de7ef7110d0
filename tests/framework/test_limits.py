"""Bounds on what one request can ask of a service, and the request-id and key checks."""
from __future__ import annotations

import httpx
import pytest

from kryptobot.schemas import MAX_BARS
from services.framework.auth import key_matches


@pytest.fixture(scope="module")
def signal(start_server):
    return start_server("services.signal.app:create_app", env={"KRYPTOBOT_MAX_BODY_BYTES": "65536", "KRYPTOBOT_API_KEY": "k"})


def test_a_body_over_the_limit_is_a_413_in_the_error_shape(signal):
    big = {"instances": [{"features": {f"f{i}": 1.0 for i in range(10_000)}}]}
    resp = httpx.post(f"{signal.url}/predict", json=big, headers={"X-Request-ID": "big-1"})
    assert resp.status_code == 413
    assert resp.json()["error"] == "PayloadTooLarge" and resp.json()["request_id"] == "big-1"


def test_a_chunked_body_over_the_limit_is_refused_too(signal):
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    resp = httpx.post(f"{signal.url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_too_many_bars_in_one_instance_is_a_422_naming_the_field(start_server):
    server = start_server("services.anomaly.app:create_app")  # default body limit (16 MiB)
    n = MAX_BARS + 1
    bars = {"timestamp": [f"2024-01-01T00:00:{i % 60:02d}" for i in range(n)],
            **{c: [1.0] * n for c in ("open", "high", "low", "close", "volume")}}
    resp = httpx.post(f"{server.url}/predict", json={"instances": [{"bars": bars}]}, timeout=60)
    assert resp.status_code == 422
    assert resp.json()["field"] == "instances[0].bars.timestamp" and str(MAX_BARS) in resp.json()["detail"]


@pytest.mark.parametrize("given", [b"\xff\xfe", b"a b", b"x" * 65, b"id;rm -rf"])
def test_an_unsafe_request_id_is_replaced_not_a_500(signal, given):
    with httpx.Client() as client:
        resp = client.get(f"{signal.url}/health/live", headers=[(b"X-Request-ID", given)])
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] != given.decode("latin-1") and resp.headers["x-request-id"].isalnum()


def test_a_safe_request_id_is_kept(signal):
    assert httpx.get(f"{signal.url}/health/live", headers={"X-Request-ID": "cycle-42.a:b"}).headers["x-request-id"] == "cycle-42.a:b"


def test_the_key_is_compared_in_constant_time_and_exactly():
    assert key_matches("secret", "secret")
    assert not key_matches("secre", "secret") and not key_matches(None, "secret") and not key_matches("sécret", "secret")


def test_swagger_has_an_authorize_scheme_for_the_key(signal):
    spec = httpx.get(f"{signal.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert any(s["type"] == "apiKey" and s["name"] == "X-API-Key" for s in schemes.values())
    assert spec["paths"]["/train"]["post"]["security"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"])
def test_a_cross_site_form_post_cannot_start_training(start_server, content_type):
    server = start_server("services.signal.app:create_app")  # no key: the guard alone must stop it
    resp = httpx.post(f"{server.url}/train", content=b'{"activate": true}', headers={"content-type": content_type})
    assert resp.status_code == 415 and resp.json()["field"] == "Content-Type"
    assert httpx.get(f"{server.url}/jobs").json() == []


def test_a_request_the_browser_marks_cross_site_cannot_change_state(start_server):
    server = start_server("services.signal.app:create_app")
    resp = httpx.post(f"{server.url}/train", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status_code == 403 and resp.json()["error"] == "Forbidden"
    assert httpx.get(f"{server.url}/jobs").json() == []
    assert httpx.get(f"{server.url}/health/live", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # reads stay open
