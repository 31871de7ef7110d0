"""A service never crash-loops on its own store: damaged pointers, job records and
versions that no longer load are repaired or fallen back from, and said so."""
from __future__ import annotations

import json

import httpx
import pytest

from services.table import spec
from tests.live import wait_for_job


@pytest.fixture(scope="module")
def trained_twice(start_server, tmp_path_factory):
    """A models directory where the signal service has v1 and v2 (v2 active)."""
    models = tmp_path_factory.mktemp("repair-models")
    server = start_server("services.signal.app:create_app", env={"KRYPTOBOT_MODELS_DIR": str(models)})
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for _ in range(2):
            job = client.post("/train", json={**spec("signal").training_body(quick=True), "activate": True}).json()
            assert wait_for_job(client, job["id"])["state"] == "succeeded"
    server.stop()
    return models / "signal"


def _restart(start_server, store_dir) -> httpx.Client:
    server = start_server("services.signal.app:create_app", env={"KRYPTOBOT_MODELS_DIR": str(store_dir.parent)})
    return httpx.Client(base_url=server.url, timeout=60)


def test_an_active_version_that_no_longer_loads_falls_back_to_the_newest_that_does(start_server, trained_twice):
    (trained_twice / "active.json").write_text(json.dumps({"signal": "signal-v2"}))
    onnx = trained_twice / "signal-v2" / "artifacts" / "forest.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # a flipped byte
    try:
        with _restart(start_server, trained_twice) as client:
            ready = client.get("/health/ready").json()
            assert ready["model_versions"] == {"signal": "signal-v1"}
            assert "signal-v2" in ready["fallbacks"]["signal"] and "sha256" in ready["fallbacks"]["signal"]
    finally:
        onnx.write_bytes(original)


@pytest.mark.parametrize("content", ["", "{torn"])
def test_a_damaged_active_json_and_job_file_do_not_stop_start_up(start_server, trained_twice, content):
    (trained_twice / "active.json").write_text(content)
    (trained_twice / "jobs" / "0123abcd.json").write_text(content)
    with _restart(start_server, trained_twice) as client:
        assert client.get("/health/ready").json()["model_versions"] == {"signal": "signal-v2"}  # the newest loadable
        job = client.get("/train/0123abcd").json()
        assert job["state"] == "failed" and "unreadable" in job["error"]
        assert json.loads((trained_twice / "active.json").read_text()) == {"signal": "signal-v2"}  # repaired
