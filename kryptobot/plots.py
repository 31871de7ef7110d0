"""Report plots (PNG). Matplotlib runs headless (Agg) and is imported lazily."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _pyplot().close(fig)
    return path


def bar_chart(path: Path, values: Mapping[str, float], title: str, ylabel: str = "", sort: bool = True) -> Path:
    plt = _pyplot()
    items = sorted(values.items(), key=lambda kv: kv[1], reverse=True) if sort else list(values.items())
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar([k for k, _ in items], [v for _, v in items], color="#3a7bd5")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=45)
    return _save(fig, path)


def grouped_bars(path: Path, groups: Mapping[str, Mapping[str, float]], title: str, baseline: Mapping[str, float] | None = None) -> Path:
    """``groups``: {group (x tick): {series: value}}; optional dashed baseline per series."""
    plt = _pyplot()
    import numpy as np

    names = list(groups)
    series = list(next(iter(groups.values())).keys()) if groups else []
    x = np.arange(len(names))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, s in enumerate(series):
        ax.bar(x + i * width, [groups[g].get(s) or 0.0 for g in names], width, label=s)
    if baseline:
        for i, s in enumerate(series):
            if baseline.get(s) is not None:
                ax.hlines(baseline[s], -0.5, len(names), colors=f"C{i}", linestyles="dashed", linewidth=1)
    ax.set_xticks(x + width * (len(series) - 1) / 2, names, rotation=20)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def confusion_matrix(path: Path, matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    return _save(fig, path)


def lines(path: Path, series: Mapping[str, Sequence[float]], title: str, xlabel: str = "", ylabel: str = "", x: Sequence | None = None) -> Path:
    """Several named lines over a shared x (e.g. training history, equity curves)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in series.items():
        ax.plot(x if x is not None else range(1, len(values) + 1), values, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(fig, path)


def histogram(path: Path, values: Sequence[float], title: str, threshold: float | None = None, xlabel: str = "",
              log_scale: bool = False) -> Path:
    """``log_scale``: log-spaced bins on a log axis, for heavy-tailed positive values."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins: int | np.ndarray = 60
    if log_scale:
        positive = np.asarray(values, dtype=float)
        positive = positive[positive > 0]
        bins = np.geomspace(positive.min(), positive.max(), 61) if len(positive) else 60
        ax.set_xscale("log")
    ax.hist(values, bins=bins, color="#3a7bd5", alpha=0.8)
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.4g}")
        ax.legend()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _save(fig, path)


def price_with_marks(path: Path, x: Sequence, price: Sequence[float], marks_x: Sequence, marks_y: Sequence[float], title: str, label: str = "anomaly") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(x, price, linewidth=1, label="close")
    ax.scatter(marks_x, marks_y, color="red", s=25, zorder=3, label=label)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def forecast_band(
    path: Path, history_x: Sequence, history: Sequence[float], future_x: Sequence, paths: Mapping[str, Sequence[float]],
    lower: Sequence[float] | None, upper: Sequence[float] | None, title: str, band_label: str = "interval",
) -> Path:
    """Recent history, one or more forecast paths, and an interval band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(history_x, history, color="black", linewidth=1, label="history")
    for name, values in paths.items():
        ax.plot(future_x, values, marker="o", markersize=3, label=name)
    if lower is not None and upper is not None:
        ax.fill_between(future_x, lower, upper, alpha=0.2, label=band_label)
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
