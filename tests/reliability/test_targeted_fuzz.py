"""Targeted fuzz of a model service (the signal service: named features and raw bars):
extreme floats, deep JSON, huge bodies, wrong content types and odd headers. Every answer
is a 200 or a 4xx in the error shape, never a 5xx, and the service serves afterwards.

Not repeated here (``tests/framework/test_limits.py`` has them): bodies over the limit,
declared or chunked (413), too many bars, unsafe ``X-Request-ID`` values, form content
types and ``Sec-Fetch-Site: cross-site`` on mutations; schemathesis
(``tests/test_openapi.py``) walks the declared schemas.
"""
from __future__ import annotations

import json
import socket
import sys

import httpx
import pytest

from kryptobot.features import FEATURE_NAMES
from kryptobot.models.common.examples import classifier_example
from services.table import spec
from tests.live import wait_for_job
from tests.reliability.figures import record

MAX_BODY = 1 << 20
#: floats at the edges: huge, the largest double, the smallest denormal, a negative zero
EXTREMES = [1e300, -1e300, sys.float_info.max, -sys.float_info.max, 5e-324, -5e-324, 2.2250738585072014e-308, -0.0, 0.0]
OUTCOMES: dict[str, dict[int, int]] = {}


@pytest.fixture(scope="module")
def signal(start_server):
    server = start_server("services.signal.app:create_app", env={"KRYPTOBOT_MAX_BODY_BYTES": str(MAX_BODY)})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        job = client.post("/train", json=spec("signal").training_body(quick=True)).json()
        assert wait_for_job(client, job["id"])["state"] == "succeeded"
    yield server
    record("targeted_fuzz", {"requests": sum(sum(c.values()) for c in OUTCOMES.values()),
                             "server_errors": sum(n for c in OUTCOMES.values() for s, n in c.items() if s >= 500),
                             "by_group": {g: {str(s): n for s, n in sorted(c.items())} for g, c in OUTCOMES.items()}})


def check(group: str, resp: httpx.Response) -> None:
    """A 200, or a 4xx in the project's error shape; counted for the figures."""
    counts = OUTCOMES.setdefault(group, {})
    counts[resp.status_code] = counts.get(resp.status_code, 0) + 1
    assert resp.status_code < 500, f"{group}: {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400:
        body = resp.json()
        assert {"error", "detail", "request_id"} <= set(body), body


def still_serves(url: str) -> None:
    resp = httpx.post(f"{url}/predict", json=classifier_example(), timeout=60)
    assert resp.status_code == 200, resp.text
    assert httpx.get(f"{url}/health/ready").status_code == 200


def example_features() -> dict[str, float]:
    return dict(classifier_example()["instances"][1]["features"])


def example_bars() -> dict:
    return json.loads(json.dumps(classifier_example()["instances"][0]["bars"]))


def test_extreme_floats_in_named_features(signal):
    with httpx.Client(base_url=signal.url, timeout=60) as client:
        for name in FEATURE_NAMES:
            for value in EXTREMES:
                body = {"instances": [{"side": "buy", "features": {**example_features(), name: value}}]}
                check("features", client.post("/predict", json=body))
        every = {"instances": [{"features": {n: v for n in FEATURE_NAMES}} for v in EXTREMES]}
        check("features", client.post("/predict", json=every))
    still_serves(signal.url)


def _bar_variants():
    """Bars whose values, or whose ratios (range over a near-zero price, volume over a zero
    median), overflow, vanish or lose their sign."""
    n = len(example_bars()["close"])
    cols = ("open", "high", "low", "close")
    for value in EXTREMES:
        for col in (*cols, "volume"):
            bars = example_bars()
            bars[col] = [value] * n
            yield f"{col}={value!r}", bars
        bars = example_bars()
        for col in cols:
            bars[col] = [value] * n
        yield f"prices={value!r}", bars
    bars = example_bars()
    bars["low"] = [5e-324] * n
    bars["high"] = [1e300] * n
    yield "high/low overflows", bars
    bars = example_bars()
    bars["close"] = [1e300 if i % 2 else 5e-324 for i in range(n)]
    yield "alternating huge and denormal closes", bars
    bars = example_bars()
    bars["volume"] = [0.0] * (n - 1) + [1e300]
    yield "volume spike over a zero median", bars
    bars = example_bars()
    bars["close"] = [-abs(c) for c in bars["close"]]
    yield "negative closes", bars


@pytest.mark.parametrize(("label", "bars"), list(_bar_variants()), ids=[label for label, _ in _bar_variants()])
def test_extreme_bars(signal, label, bars):
    resp = httpx.post(f"{signal.url}/predict", json={"instances": [{"side": "sell", "bars": bars}]}, timeout=60)
    check("bars", resp)
    if resp.status_code == 200:  # a 200 carries finite numbers only
        assert all(v == v and abs(v) != float("inf") for v in resp.json()["predictions"][0]["features"].values())


def test_deep_nesting_and_odd_json(signal):
    deep = 100_000
    bodies = [
        b"[" * deep + b"]" * deep,
        b'{"instances": ' + b"[" * deep + b"]" * deep + b"}",
        b'{"instances": [{"features": ' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"}]}",
        b'{"instances": [{"features": {"rsi": ' + b"9" * 100_000 + b"}}]}",  # beyond int's digit limit
        b'{"instances": [{"features": {"rsi": 1e999999}}]}',
        b'{"instances": [{"features": {"rsi": NaN}}]}',
        b'{"instances": [{"features": {"rsi": -Infinity}}]}',
        b'{"instances": [], "instances": [1]}',
        b"\xff\xfe{\x00}\x00",
        b'{"instances": [{"symbol": "\xc3\x28"}]}',  # invalid UTF-8 inside a string
        b'{"instances": [{"symbol": "\\ud800"}]}',  # a lone surrogate
        b"",
        b"null",
        b"1e400",
    ]
    with httpx.Client(base_url=signal.url, timeout=60) as client:
        for body in bodies:
            for path in ("/predict", "/train"):
                check("json", client.post(path, content=body, headers={"content-type": "application/json"}))
        for job in client.get("/jobs").json():  # an empty or null body is a default training job: a 202
            if job["state"] in ("queued", "running"):
                assert client.delete(f"/train/{job['id']}").status_code == 200
    still_serves(signal.url)


def test_huge_bodies_under_the_limit(signal):
    n = MAX_BODY // 40
    bodies = [
        json.dumps({"instances": [{"features": example_features()}] * 2000}).encode(),  # over max_batch? no: at it
        json.dumps({"instances": [{"features": {f"f{i}": 1.0 for i in range(n // 2)}}]}).encode()[: MAX_BODY - 1],
        json.dumps({"instances": [{"symbol": "A" * (MAX_BODY - 100)}]}).encode(),
        b" " * (MAX_BODY - 10) + b"{}",
        json.dumps({"instances": [{"side": "buy", "bars": example_bars()}] * 200}).encode()[:MAX_BODY],
    ]
    with httpx.Client(base_url=signal.url, timeout=120) as client:
        for body in bodies:
            assert len(body) <= MAX_BODY
            check("huge", client.post("/predict", content=body, headers={"content-type": "application/json"}))
    still_serves(signal.url)


def test_wrong_content_types(signal):
    body = json.dumps(classifier_example()).encode()
    types = [None, "application/xml", "text/html", "application/json; charset=latin-1", "application/json; charset=utf-16",
             "application/merge-patch+json", "application/octet-stream", "image/png", "*/*", ";;;", "application/json; boundary",
             "APPLICATION/JSON", "text/plain; charset=utf-8", "multipart/mixed; boundary=zz"]
    with httpx.Client(base_url=signal.url, timeout=60) as client:
        for content_type in types:
            headers = {} if content_type is None else {"content-type": content_type}
            for path in ("/predict", "/train", "/models/signal-v1/activate"):
                check("content-type", client.post(path, content=body, headers=headers))
        check("content-type", client.post("/predict", content=body, headers=[(b"content-type", b"application/\xff\xfejson")]))
        utf16 = json.dumps(classifier_example()).encode("utf-16")
        check("content-type", client.post("/predict", content=utf16, headers={"content-type": "application/json; charset=utf-16"}))
    still_serves(signal.url)


def _raw(url: str, request: bytes) -> bytes:
    """One request written byte for byte (httpx refuses some of these headers), the answer's bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def test_odd_headers(signal):
    body = json.dumps(classifier_example()).encode()
    odd = [
        [(b"X-API-Key", b"\xff\xfe\x00")],
        [(b"X-API-Key", "clé".encode())],
        [(b"X-API-Key", b"a"), (b"X-API-Key", b"b")],
        [(b"Content-Type", b"application/json"), (b"Content-Type", b"text/plain")],
        [(b"Content-Type", b"text/plain"), (b"Content-Type", b"application/json")],
        [(b"X-Request-ID", b"a"), (b"X-Request-ID", b"b")],
        [(b"Sec-Fetch-Site", b"\xff")],
        [(b"Accept", b"application/json" + b", text/html" * 500)],
        [(b"X-Long", b"x" * 12_000)],
        [(b"X-Many-" + str(i).encode(), b"v") for i in range(90)],
        [(b"Accept-Encoding", b"\xff, gzip;q=\xff")],
        [(b"Host", b"\xff\xfe")],
    ]
    for extra in odd:
        headers = b"".join(k + b": " + v + b"\r\n" for k, v in extra)
        if not any(k.lower() == b"content-type" for k, _ in extra):
            headers += b"Content-Type: application/json\r\n"
        if not any(k.lower() == b"host" for k, _ in extra):
            headers += b"Host: 127.0.0.1\r\n"
        for path in (b"/predict", b"/train"):
            request = b"POST " + path + b" HTTP/1.1\r\n" + headers + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            status = _status(_raw(signal.url, request))
            OUTCOMES.setdefault("headers", {})[status] = OUTCOMES.setdefault("headers", {}).get(status, 0) + 1
            assert status < 500, (extra[:2], status)
    for target in (b"/reports?version=%ff%fe", b"/models/%ff/activate", b"/train/%00", b"/reports/..%2f..%2fetc%2fpasswd", b"/train/" + b"a" * 5000):
        method = b"POST" if target.endswith(b"activate") else b"GET"
        answer = _raw(signal.url, method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        status = _status(answer)
        OUTCOMES.setdefault("paths", {})[status] = OUTCOMES.setdefault("paths", {}).get(status, 0) + 1
        assert status < 500, (target, answer[:300])
    still_serves(signal.url)
