"""Shared helpers for the benchmark scripts: a live server and latency statistics."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live import LiveServer, wait_for_job  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def time_calls(fn: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    """Wall time of ``n`` calls, in milliseconds, after ``warmup`` unmeasured calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(name: str, samples_ms: list[float], target_ms: float | None = None) -> float:
    p50, p99 = percentile(samples_ms, 50), percentile(samples_ms, 99)
    verdict = ""
    if target_ms is not None:
        verdict = f"  target p50 < {target_ms} ms: {'OK' if p50 < target_ms else 'MISSED'}"
    print(f"{name:<48} p50 {p50:8.3f} ms  p99 {p99:8.3f} ms  mean {statistics.fmean(samples_ms):8.3f} ms  n={len(samples_ms)}{verdict}")
    return p50


def report_feature_building(bars_instance: dict, n: int = 300) -> float:
    """In-process cost of what a raw-bars instance adds to a classifier's /predict: the
    nine features of its last bar, from the bars as they arrive."""
    from kryptobot.features import FeatureParams, latest_features
    from kryptobot.schemas import Bars

    bars = Bars(**bars_instance["bars"])
    return report(f"in-process features of the last of {len(bars.close)} bars",
                  time_calls(lambda: latest_features(bars.columns(), FeatureParams()), n))


def start_service(factory: str, env: dict | None = None) -> tuple[LiveServer, Path]:
    workdir = Path(tempfile.mkdtemp(prefix="kryptobot-bench-"))
    server = LiveServer(factory, {"KRYPTOBOT_MODELS_DIR": str(workdir / "models"), "KRYPTOBOT_LOG_FORMAT": "text", **(env or {})}, workdir / "server.log")
    return server.start(), workdir


__all__ = ["LiveServer", "wait_for_job", "percentile", "time_calls", "report", "report_feature_building", "start_service", "ROOT"]
