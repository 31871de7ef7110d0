"""Shared fixtures: the real Redis, and real uvicorn servers on free ports."""
from __future__ import annotations

import os

import pytest

from tests.live import LiveServer

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REDIS_URL = os.environ.get("KRYPTOBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # make test starts Redis; a failure here is a real failure, not a skip
    return REDIS_URL


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """Factory: ``start_server("services.signal.app:create_app", env={...})`` -> started LiveServer.

    Module-scoped so a test module can train once and share the server; servers of one
    module share a models directory (each service has its own subdirectory).
    """
    servers: list[LiveServer] = []
    tmp_path = tmp_path_factory.mktemp("servers")

    def start(factory: str, env: dict[str, str] | None = None, port: int | None = None, **kwargs) -> LiveServer:
        env = {"KRYPTOBOT_MODELS_DIR": str(tmp_path / "models"), "KRYPTOBOT_LOG_FORMAT": "text", **(env or {})}
        name = factory.split(":")[0].split(".")[-2]
        server = LiveServer(factory, env, tmp_path / f"{name}-{len(servers)}.log", port=port)
        servers.append(server)
        return server.start(**kwargs)

    yield start
    for server in servers:
        server.stop()
