"""``services.serve`` refuses to listen beyond this machine without a key."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kryptobot.settings import Settings
from services.serve import refusal
from tests.live import ROOT


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_key(host):
    assert refusal(Settings(host=host, api_key=None, allow_open=False)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "my-host"])
def test_anything_else_needs_a_key_or_an_explicit_yes(host):
    assert "without an API key" in refusal(Settings(host=host, api_key=None, allow_open=False))
    assert refusal(Settings(host=host, api_key="k", allow_open=False)) is None
    assert refusal(Settings(host=host, api_key=None, allow_open=True)) is None


def test_the_entry_point_exits_before_listening():
    env = {k: v for k, v in os.environ.items() if k not in ("KRYPTOBOT_API_KEY", "KRYPTOBOT_ALLOW_OPEN")}
    proc = subprocess.run([sys.executable, "-m", "services.serve", "signal"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "KRYPTOBOT_HOST": "0.0.0.0", "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 2 and "KRYPTOBOT_API_KEY" in proc.stderr
    unknown = subprocess.run([sys.executable, "-m", "services.serve", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown service" in unknown.stderr
