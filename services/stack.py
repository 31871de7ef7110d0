"""The whole system as local processes: what ``make run`` starts (the Compose topology, no Docker).

``python -m services.stack`` starts the trader and the four model services as uvicorn
processes on 127.0.0.1, prefixes every line they print with ``[name]``, waits until each
is live, trains a first model for each model service that has none (see
:mod:`services.bootstrap`), prints each service's ``/docs`` URL and runs until Ctrl-C or
SIGTERM, which stops every child (and any training job it started).

Environment (all optional):

* ``KRYPTOBOT_STACK_VAR``: state directory (default ``var``): models in ``<var>/models``,
  the trader's ledger and reports in ``<var>/trader``. Explicit ``KRYPTOBOT_MODELS_DIR``,
  ``KRYPTOBOT_LEDGER_PATH`` or ``KRYPTOBOT_REPORTS_DIR`` win.
* ``KRYPTOBOT_STACK_PORT_BASE``: trader on base, signal +1, anomaly +2, ensemble +3,
  forecast +4 (default 8000); ``KRYPTOBOT_STACK_<NAME>_PORT`` sets one service's port.
* ``KRYPTOBOT_STACK_QUICK=1``: tiny first-start training (seconds; for tests).
* ``KRYPTOBOT_STACK_PARALLEL``: first-start training jobs at a time (default 2).
* ``KRYPTOBOT_LOG_FORMAT``: the children's log format; by default plain text when this
  process writes to a terminal and JSON lines otherwise (uvicorn's own lines included), so
  ``python -m services.stack | collector`` gets ``[name] {json}`` lines.

Each child runs in its own process group, so a Ctrl-C reaches only this process, which
then stops the children in order: training jobs cancelled, SIGTERM, SIGKILL after a grace
period.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.bootstrap import POLL_REQUEST_ID, BootstrapError, ensure_models
from services.table import HOST, MODEL_SERVICES, PORT_BASE, SERVICES, spec

ROOT = Path(__file__).resolve().parents[1]
#: port offsets from KRYPTOBOT_STACK_PORT_BASE: the service table's, as in docker-compose.yml
PORT_OFFSETS = {s.name: s.port_offset for s in SERVICES}
LIVE_TIMEOUT = 120.0
STOP_GRACE = 20.0
NAME_WIDTH = max(map(len, PORT_OFFSETS)) + 2


class StackError(RuntimeError):
    """The stack cannot start as configured; the message says what to change."""


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise StackError(f"{name}={value} is outside {low}..{high}")
    return value


@dataclass(frozen=True)
class StackConfig:
    var_dir: Path
    ports: dict[str, int]
    quick: bool = False
    parallel: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StackConfig:
        base = _int(environ, "KRYPTOBOT_STACK_PORT_BASE", PORT_BASE, 1, 65535 - max(PORT_OFFSETS.values()))
        ports = {
            name: _int(environ, f"KRYPTOBOT_STACK_{name.upper()}_PORT", base + offset, 1, 65535)
            for name, offset in PORT_OFFSETS.items()
        }
        if len(set(ports.values())) != len(ports):
            raise StackError(f"two services share a port: {ports}")
        var_dir = Path(environ.get("KRYPTOBOT_STACK_VAR") or ROOT / "var")
        return cls(
            var_dir=var_dir if var_dir.is_absolute() else ROOT / var_dir,
            ports=ports,
            quick=_flag(environ.get("KRYPTOBOT_STACK_QUICK")),
            parallel=_int(environ, "KRYPTOBOT_STACK_PARALLEL", 2, 1, 4),
        )

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    def child_env(self, environ: Mapping[str, str] = os.environ, terminal: bool = False) -> dict[str, str]:
        """The children's environment: the caller's, plus where state lives and where the services are."""
        env = dict(environ)
        env.setdefault("KRYPTOBOT_MODELS_DIR", str(self.var_dir / "models"))
        env.setdefault("KRYPTOBOT_LEDGER_PATH", str(self.var_dir / "trader" / "ledger.sqlite"))
        env.setdefault("KRYPTOBOT_REPORTS_DIR", str(self.var_dir / "trader" / "reports"))
        env.setdefault("KRYPTOBOT_MARKET_DATA_DIR", str(self.var_dir / "market-data"))
        # The children always write to our pipe, so their own "auto" would always pick JSON;
        # what counts is where *our* output goes: a person's terminal, or a log collector.
        env["KRYPTOBOT_LOG_FORMAT"] = (env.get("KRYPTOBOT_LOG_FORMAT") or "auto").strip().lower()
        if env["KRYPTOBOT_LOG_FORMAT"] == "auto":
            env["KRYPTOBOT_LOG_FORMAT"] = "text" if terminal else "json"
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the terminal as they are printed
        for name in MODEL_SERVICES:  # the topology is the stack's: the trader must call these
            env[spec(name).url_env] = self.url(name)
        return env


class Output:
    """Writes whole lines to stdout, one writer at a time, each tagged with its source."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        # reentrant: the signal handler writes too, possibly while the main thread holds it
        self.lock = threading.RLock()

    def line(self, name: str, text: str) -> None:
        with self.lock:
            self.stream.write(f"{'[' + name + ']':<{NAME_WIDTH}} {text.rstrip()}\n")
            self.stream.flush()

    def stack(self, text: str) -> None:
        self.line("stack", text)


@dataclass
class Child:
    name: str
    port: int
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    json_lines: bool = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, env: dict[str, str], out: Output, log_config: Path | None = None) -> None:
        self.json_lines = env.get("KRYPTOBOT_LOG_FORMAT") == "json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", spec(self.name).app, "--factory",
             "--host", HOST, "--port", str(self.port),
             "--no-access-log",  # the services log their own requests (with request ids)
             *(["--log-config", str(log_config)] if log_config else [])],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C is ours to handle, in order
        )
        self.reader = threading.Thread(target=self._pump, args=(out,), name=f"out-{self.name}", daemon=True)
        self.reader.start()

    def _pump(self, out: Output) -> None:
        hidden = POLL_REQUEST_ID.encode()  # the bootstrap's own status polls (text or JSON lines)
        for raw in self.proc.stdout:
            if hidden not in raw:
                text = raw.decode(errors="replace").rstrip()
                if text:
                    out.line(self.name, as_json_line(text) if self.json_lines else text)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def as_json_line(text: str) -> str:
    """``text`` if it is already a JSON log record, else that text wrapped in one.

    Native libraries (TensorFlow's C++ runtime, absl) write to the process's stderr
    directly, past Python's logging: a log collector must still get one record a line.
    """
    if text.startswith("{"):
        try:
            json.loads(text)
            return text
        except ValueError:
            pass
    # a level of its own would be a guess from free text: what bypasses logging is flagged for a look
    return json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "level": "WARNING", "logger": "stderr", "msg": text})


def uvicorn_json_logging(path: Path) -> Path:
    """A ``--log-config`` file that makes uvicorn's own lines (start, stop, errors) JSON too.

    The services switch the root logger to JSON at start-up, but uvicorn's loggers have
    their own handler and are configured before the app exists.
    """
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "services.framework.observability.JsonFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": {"handlers": ["json"], "level": "INFO", "propagate": False}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def service_names() -> list[str]:
    """The services whose app module exists (the trader may not be written yet)."""
    return [s.name for s in SERVICES if (ROOT / (s.app.split(":")[0].replace(".", "/") + ".py")).exists()]


class Stack:
    def __init__(self, config: StackConfig, out: Output | None = None, environ: Mapping[str, str] = os.environ):
        self.config = config
        self.out = out or Output()
        self.environ = environ
        self.stop = threading.Event()
        names = service_names()
        for missing in sorted(set(PORT_OFFSETS) - set(names)):
            self.out.stack(f"{missing}: services/{missing}/app.py does not exist; starting without it")
        self.children = {name: Child(name, config.ports[name]) for name in names}

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        busy = [f"{n} ({c.port})" for n, c in self.children.items() if not _port_free(c.port)]
        if busy:
            raise StackError(
                f"port(s) in use: {', '.join(busy)}; stop what holds them or set KRYPTOBOT_STACK_PORT_BASE "
                "(or KRYPTOBOT_STACK_<NAME>_PORT)"
            )
        env = self.config.child_env(self.environ, terminal=self.out.stream.isatty())
        for key in ("KRYPTOBOT_MODELS_DIR", "KRYPTOBOT_REPORTS_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        Path(env["KRYPTOBOT_LEDGER_PATH"]).parent.mkdir(parents=True, exist_ok=True)
        log_config = None
        if env["KRYPTOBOT_LOG_FORMAT"] == "json":
            log_config = uvicorn_json_logging(self.config.var_dir / "run" / "uvicorn-logging.json")
        self.out.stack(
            f"state in {self.config.var_dir}; models in {env['KRYPTOBOT_MODELS_DIR']}; "
            f"{env['KRYPTOBOT_LOG_FORMAT']} logs"
        )
        for child in self.children.values():
            child.start(env, self.out, log_config)
            self.out.stack(f"{child.name}: pid {child.proc.pid}, port {child.port}")

    def wait_live(self) -> None:
        pending = dict(self.children)
        deadline = time.monotonic() + LIVE_TIMEOUT
        while pending and not self.stop.is_set():
            for name, child in list(pending.items()):
                self._check_running(child)
                try:
                    if httpx.get(f"{child.url}/health/live", timeout=1.0).status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise StackError(f"not live after {LIVE_TIMEOUT:.0f}s: {', '.join(pending)}")
            self.stop.wait(0.2)

    def bootstrap(self) -> None:
        urls = {n: c.url for n, c in self.children.items() if n in MODEL_SERVICES}
        try:
            ensure_models(
                urls,
                quick=self.config.quick,
                parallel=self.config.parallel,
                api_key=self.environ.get("KRYPTOBOT_API_KEY") or None,
                log=lambda text: self.out.line("bootstrap", text),
                stop=self.stop,
                poll=0.5 if self.config.quick else 2.0,
            )
        except BootstrapError as exc:
            if not self.stop.is_set():  # the stack stays up: a user can train from /docs
                self.out.stack(f"first-start training failed: {exc}")

    def report(self, started: float) -> None:
        self.out.stack(f"started in {time.monotonic() - started:.0f}s{' (quick mode)' if self.config.quick else ''}:")
        for name, child in self.children.items():
            try:
                resp = httpx.get(f"{child.url}/health/ready", timeout=5.0)
                body = resp.json()
            except (httpx.HTTPError, ValueError) as exc:
                self.out.stack(f"  {name:<9} {child.url}/docs  NOT READY: {exc!r}")
                continue
            if resp.status_code != 200:
                state = f"NOT READY: {body.get('detail')}"
            elif name == "trader":
                state = "ready" if body.get("redis") else "ready, but Redis is unreachable (forecasts are not cached)"
            else:
                state = "ready " + "+".join(body.get("model_versions", {}).values())
            self.out.stack(f"  {name:<9} {child.url}/docs  {state}")
        self.out.stack("stack ready; Ctrl-C stops it")

    # -- run and stop ----------------------------------------------------------------------
    def _check_running(self, child: Child) -> None:
        if not child.running:
            code = child.proc.returncode
            raise StackError(f"{child.name} exited with code {code} (see its [{child.name}] lines above)")

    def wait(self) -> None:
        """Until Ctrl-C / SIGTERM, or a child dies (which stops the stack)."""
        while not self.stop.wait(0.5):
            for child in self.children.values():
                self._check_running(child)

    def cancel_jobs(self) -> None:
        """Cancel running training jobs: they run in their own sessions and would outlive the
        stack, then commit versions nobody activates."""
        headers = {"X-API-Key": self.environ["KRYPTOBOT_API_KEY"]} if self.environ.get("KRYPTOBOT_API_KEY") else {}
        for name, child in self.children.items():
            if name not in MODEL_SERVICES or not child.running:
                continue  # (never ask a port this stack did not start: it may be another's)
            try:
                for job in httpx.get(f"{child.url}/jobs", timeout=2.0).json():
                    if job["state"] in ("queued", "running"):
                        httpx.delete(f"{child.url}/train/{job['id']}", headers=headers, timeout=5.0)
                        self.out.stack(f"{name}: cancelled training job {job['id']}")
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # the service is already going down: nothing left to ask it

    def shutdown(self) -> None:
        self.stop.set()
        self.cancel_jobs()
        running = [c for c in self.children.values() if c.running]
        if running:
            self.out.stack(f"stopping {', '.join(c.name for c in running)}")
        for child in running:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.stack(f"{child.name} did not stop in {STOP_GRACE:.0f}s; killing it")
                child.signal(signal.SIGKILL)
                child.proc.wait()
        for child in self.children.values():
            if child.reader is not None:
                child.reader.join(timeout=2.0)
        self.out.stack("stopped")


def main() -> int:
    out = Output()
    try:
        config = StackConfig.from_env()
    except StackError as exc:
        out.stack(f"error: {exc}")
        return 2
    stack = Stack(config, out)

    def request_stop(signum, _frame):
        if not stack.stop.is_set():
            out.stack(f"{signal.Signals(signum).name}: stopping")
        stack.stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    code = 0
    try:
        stack.start()
        stack.wait_live()
        if not stack.stop.is_set():
            out.stack(f"all live in {time.monotonic() - started:.0f}s")
            stack.bootstrap()
        if not stack.stop.is_set():
            stack.report(started)
            stack.wait()
    except StackError as exc:
        out.stack(f"error: {exc}")
        code = 1
    finally:
        stack.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
