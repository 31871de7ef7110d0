"""The reliability suite's two sizes and its figures.

Every test here runs a short version in ``make test`` and a long one under
``make reliability`` (``KRYPTOBOT_RELIABILITY=long``). Each test records what it measured
(kills, lost or duplicated rows, stuck states, p99, memory slope...) with :func:`record`;
``make reliability`` collects the files into the table in ``docs/reliability.md``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tests.live import ROOT

FIGURES_DIR = ROOT / "test-artifacts" / "reliability"


def long_run() -> bool:
    return os.environ.get("KRYPTOBOT_RELIABILITY", "short") == "long"


def scale(short: int, long: int) -> int:
    """How many iterations (kills, predictions, swaps...) this run does."""
    return long if long_run() else short


def record(name: str, figures: dict) -> Path:
    """Write one test's figures (JSON) for the report; returns the file written."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{name}.json"
    path.write_text(json.dumps({"run": "long" if long_run() else "short", **figures}, indent=2, default=str))
    return path
