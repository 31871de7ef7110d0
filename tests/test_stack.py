"""``python -m services.stack`` (what ``make run`` starts), run for real in quick mode.

One stack on free ports with a temporary state directory: every service becomes ready,
each model service answers its own Swagger example, the output is tagged per process (and
is JSON lines from the services, as it goes to a pipe, not a terminal), a second bootstrap
leaves trained services alone, and SIGINT stops every child.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

pytestmark = [pytest.mark.slow, pytest.mark.tf]

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("trader", "signal", "anomaly", "ensemble", "forecast")
TAGS = NAMES + ("stack", "bootstrap")
READY_TIMEOUT = 300.0
STOP_TIMEOUT = 40.0


def service_classes() -> dict:
    from kryptobot.models.anomaly.runtime import AnomalyRuntime
    from kryptobot.models.ensemble.runtime import EnsembleRuntime
    from kryptobot.models.forecast.runtime import ForecastRuntime
    from kryptobot.models.signal.runtime import SignalRuntime

    return {"signal": SignalRuntime, "anomaly": AnomalyRuntime, "ensemble": EnsembleRuntime, "forecast": ForecastRuntime}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without its KRYPTOBOT_ settings (they would leak into the stack)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("KRYPTOBOT_")}, **extra}


class StackProcess:
    """``python -m services.stack`` with its output collected line by line."""

    def __init__(self, env: dict[str, str]):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.stack"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if "stack ready" in line:
                self.ready.set()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.lines[-n:])

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            if self.proc.poll() is not None:
                pytest.fail(f"the stack exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the stack was not ready in {timeout:.0f}s:\n{self.tail()}")

    def child_pids(self) -> dict[str, int]:
        found = (re.search(r"^\[stack\]\s+(\w+): pid (\d+), port", line) for line in self.lines)
        return {m.group(1): int(m.group(2)) for m in found if m}

    def kill_everything(self) -> None:
        for pid in [self.proc.pid, *self.child_pids().values()]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(timeout=10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    var = tmp_path_factory.mktemp("stack-var")
    ports = {name: free_port() for name in NAMES}
    env = clean_env(
        KRYPTOBOT_STACK_VAR=str(var),
        KRYPTOBOT_STACK_QUICK="1",
        KRYPTOBOT_REDIS_URL=redis_url,
        KRYPTOBOT_CACHE_PREFIX=f"test-stack-{os.getpid()}",
        **{f"KRYPTOBOT_STACK_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    started = time.monotonic()
    proc = StackProcess(env)
    try:
        proc.wait_ready(READY_TIMEOUT)
        proc.ready_seconds = time.monotonic() - started
        proc.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        proc.var = var
        yield proc
    finally:
        if proc.proc.poll() is None and not getattr(proc, "stopped", False):
            proc.kill_everything()


def test_every_service_is_ready(stack):
    print(f"stack ready in {stack.ready_seconds:.0f}s (quick mode)")
    for name, url in stack.urls.items():
        resp = httpx.get(f"{url}/health/ready", timeout=10)
        assert resp.status_code == 200, (name, resp.text)
    assert httpx.get(f"{stack.urls['trader']}/health/ready", timeout=10).json()["redis"] is True


@pytest.mark.parametrize("name", ["signal", "anomaly", "ensemble", "forecast"])
def test_model_services_answer_their_swagger_example(stack, name):
    example = service_classes()[name].predict_example()
    resp = httpx.post(f"{stack.urls[name]}/predict", json=example, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["predictions"]) == len(example["instances"])
    assert body["model_version"]


def test_the_trader_reaches_every_model_service(stack):
    resp = httpx.post(f"{stack.urls['trader']}/cycle", json={"symbols": ["SPY", "QQQ"]}, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert len(body["decisions"]) == 2
    assert not body["degraded"], body  # every model service answered the trader


def test_state_lives_in_the_var_directory(stack):
    for name in ("signal", "anomaly", "ensemble", "forecast"):
        assert (stack.var / "models" / name).is_dir(), name
    assert (stack.var / "trader" / "ledger.sqlite").is_file()


def test_output_lines_are_tagged_with_their_process(stack):
    untagged = [line for line in stack.lines if line.strip() and not re.match(rf"^\[({'|'.join(TAGS)})\] ", line)]
    assert not untagged, untagged[:5]
    tags = {re.match(r"^\[(\w+)\]", line).group(1) for line in stack.lines if line.strip()}
    assert set(NAMES) <= tags, f"no output from {set(NAMES) - tags}"
    docs = [line for line in stack.lines if line.startswith("[stack]") and "/docs" in line]
    assert {url + "/docs" for url in stack.urls.values()} <= {w for line in docs for w in line.split()}


def test_service_logs_are_json_lines_when_not_on_a_terminal(stack):
    """The stack writes to a pipe here, so every line a service prints is ``[name] {json}``."""
    by_service: dict[str, list[dict]] = {name: [] for name in NAMES}
    for line in stack.lines:
        match = re.match(rf"^\[({'|'.join(NAMES)})\]\s+(.*)$", line)
        if match:
            try:
                by_service[match.group(1)].append(json.loads(match.group(2)))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line}")
    for name, records in by_service.items():
        assert records, f"no log lines from {name}"
        assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records), name
    access = [r for name in NAMES if name != "trader" for r in by_service[name] if r["logger"] == "kryptobot.access"]
    assert access and all(r["request_id"] and r["status"] for r in access), "access lines carry request ids"
    assert any(r["path"] == "/train" and r["status"] == 202 for r in access), "the bootstrap's POST /train is logged"
    assert not any(r.get("request_id") == "bootstrap-poll" for r in access), "the bootstrap's status polls are hidden"


def test_bootstrap_leaves_trained_services_alone(stack):
    urls = {n: u for n, u in stack.urls.items() if n != "trader"}
    before = {n: len(httpx.get(f"{u}/models", timeout=10).json()["models"]) for n, u in urls.items()}
    args = [arg for name, url in urls.items() for arg in ("--service", name, "--service-url", url)]
    result = subprocess.run(
        [sys.executable, "-m", "services.bootstrap", "--quick", *args],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training" not in result.stdout
    after = {n: len(httpx.get(f"{u}/models", timeout=10).json()["models"]) for n, u in urls.items()}
    assert after == before


def test_sigint_stops_every_child(stack):
    pids = stack.child_pids()
    assert set(pids) == set(NAMES), stack.tail()
    stack.stopped = True
    stack.proc.send_signal(signal.SIGINT)
    try:
        code = stack.proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        stack.kill_everything()
        pytest.fail(f"the stack did not stop within {STOP_TIMEOUT:.0f}s:\n{stack.tail()}")
    assert code == 0, stack.tail()
    still = {name: pid for name, pid in pids.items() if alive(pid)}
    assert not still, f"children left running: {still}"
    stack.reader.join(timeout=5)
    assert stack.lines[-1].startswith("[stack]") and "stopped" in stack.lines[-1]


def test_a_busy_port_is_named_with_the_variable_to_change():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "services.stack"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env=clean_env(KRYPTOBOT_STACK_SIGNAL_PORT=str(port), KRYPTOBOT_STACK_PORT_BASE=str(free_port())),
        )
    assert result.returncode == 1
    assert f"signal ({port})" in result.stdout and "KRYPTOBOT_STACK_" in result.stdout


def test_a_bad_setting_stops_the_stack_before_anything_starts():
    result = subprocess.run(
        [sys.executable, "-m", "services.stack"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env=clean_env(KRYPTOBOT_STACK_PORT_BASE="eighty"),
    )
    assert result.returncode == 2
    assert "KRYPTOBOT_STACK_PORT_BASE='eighty' is not an integer" in result.stdout


def test_native_stderr_lines_become_json_records_and_json_lines_pass_as_they_are():
    from services.stack import as_json_line

    record = json.loads(as_json_line("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"))
    assert record["logger"] == "stderr" and record["msg"].startswith("WARNING: All log") and {"ts", "level"} <= set(record)
    line = json.dumps({"ts": "t", "level": "INFO", "logger": "kryptobot.access", "msg": "GET /predict"})
    assert as_json_line(line) == line
    assert json.loads(as_json_line("{not json"))["msg"] == "{not json"
