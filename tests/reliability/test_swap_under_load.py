"""Swapping versions under load: predictions from several threads while two versions are
activated back and forth. Every answer is a 200 computed by the one version it names (the
two versions' outputs differ, so an answer mixing them shows), and the latency during
swaps is recorded next to the latency without them."""
from __future__ import annotations

import threading
import time

import httpx

from tests.reliability.figures import record, scale
from tests.reliability.model_service import Service, finished_job, percentiles, post_train

THREADS = 4
#: points on both sides of the rule and far out, where the two fits differ most
PROBE = {"instances": [{"x1": 3.0, "x2": -3.0}, {"x1": -2.0, "x2": 1.5}, {"x1": 0.4, "x2": 0.1}]}


def _expected(client: httpx.Client, version: str) -> list[float]:
    assert client.post(f"/models/{version}/activate").status_code == 200
    body = client.post("/predict", json=PROBE).json()
    assert body["model_version"] == version
    return [p["probability"] for p in body["predictions"]]


def _hammer(url: str, n: int, expected: dict[str, list[float]], out: dict) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            resp = client.post("/predict", json=PROBE)
            elapsed = time.perf_counter() - started
            with out["lock"]:
                out["latencies"].append(elapsed)
                if resp.status_code != 200:
                    out["non_200"].append(resp.status_code)
                    continue
                body = resp.json()
                got = [p["probability"] for p in body["predictions"]]
                out["versions"][body["model_version"]] = out["versions"].get(body["model_version"], 0) + 1
                if got != expected.get(body["model_version"]):
                    out["mixed"].append((body["model_version"], got))


def _load(url: str, total: int, expected: dict[str, list[float]], swap=None) -> dict:
    out = {"lock": threading.Lock(), "latencies": [], "non_200": [], "mixed": [], "versions": {}}
    workers = [threading.Thread(target=_hammer, args=(url, total // THREADS, expected, out)) for _ in range(THREADS)]
    for w in workers:
        w.start()
    swaps = swap(workers) if swap else 0
    for w in workers:
        w.join(300)
    return {**out, "swaps": swaps}


def test_predictions_during_back_and_forth_activation_are_all_200_and_never_mixed(tmp_path):
    service = Service(tmp_path / "models", tmp_path)
    client = service.start()
    try:
        for body in ({"seed": 0}, {"seed": 1, "n_samples": 200, "C": 0.01}):
            assert finished_job(client, post_train(client, body).json()["id"])["state"] == "succeeded"
        expected = {v: _expected(client, v) for v in ("tiny-v1", "tiny-v2")}
        assert expected["tiny-v1"] != expected["tiny-v2"]  # else a mixed answer could not show

        def swap_until_done(workers) -> int:
            swaps, version = 0, "tiny-v1"
            while any(w.is_alive() for w in workers) and swaps < 100_000:
                version = "tiny-v2" if version == "tiny-v1" else "tiny-v1"
                resp = client.post(f"/models/{version}/activate")
                assert resp.status_code == 200, resp.text
                swaps += 1
            return swaps

        total = scale(800, 20_000)
        calm = _load(service.server.url, total, expected)
        stormy = _load(service.server.url, total, expected, swap=swap_until_done)
        figures = {
            "threads": THREADS,
            "predictions_per_phase": total,
            "swaps": stormy["swaps"],
            "non_200": len(calm["non_200"]) + len(stormy["non_200"]),
            "mixed_answers": len(calm["mixed"]) + len(stormy["mixed"]),
            "answers_per_version_during_swaps": stormy["versions"],
            "latency_without_swaps": percentiles(calm["latencies"]),
            "latency_during_swaps": percentiles(stormy["latencies"]),
        }
        record("swap_under_load", figures)
        assert stormy["swaps"] >= 10, figures
        assert figures["non_200"] == 0 and figures["mixed_answers"] == 0, (figures, stormy["non_200"][:5], stormy["mixed"][:5])
        assert len(stormy["versions"]) == 2, figures  # both versions really served during the swaps
    finally:
        client.close()
        service.stop()
