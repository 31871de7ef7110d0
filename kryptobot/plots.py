"""Report plots (PNG). Matplotlib runs headless (Agg) and is imported lazily."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


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


def equity_curves(path: Path, curves: Mapping[str, pd.Series], title: str, markers: Sequence = (), marker_label: str = "",
                  notes: Mapping[str, str] | None = None, reference: str = "technical") -> Path:
    """Backtest equity curves: every mode together (log scale, ``buy_and_hold`` dashed
    black), then one panel per mode on its own scale with its drawdowns shaded and, for the
    other modes, ``reference`` dashed for comparison; ``notes`` titles each panel, dotted
    vertical lines mark ``markers`` (e.g. the walk-forward's retraining days)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(curves) + 1, 1, figsize=(10, 2.8 + 1.8 * len(curves)), sharex=True,
                             gridspec_kw={"height_ratios": [2.2] + [1.0] * len(curves)})
    scaled = {name: np.asarray(curve, dtype=float) / float(np.asarray(curve, dtype=float)[0]) for name, curve in curves.items()}
    x = {name: curve.index for name, curve in curves.items()}
    colors = {name: "black" if name == "buy_and_hold" else f"C{k}" for k, name in enumerate(scaled)}
    overview = axes[0]
    for name, values in scaled.items():
        dashes = "--" if name == "buy_and_hold" else "-"
        overview.plot(x[name], values, color=colors[name], linestyle=dashes, linewidth=1.1, label=f"{name} ({values[-1] - 1:+.1%})")
    overview.set_yscale("log")
    overview.axhline(1.0, color="grey", linewidth=0.6)
    overview.set_title(title)
    overview.set_ylabel("equity (start = 1, log)")
    overview.legend(fontsize=8, loc="upper left")
    for ax, (name, values) in zip(axes[1:], scaled.items()):
        if reference in scaled and name not in (reference, "buy_and_hold"):
            ax.plot(x[reference], scaled[reference], color="grey", linestyle="--", linewidth=0.9, label=reference)
            ax.legend(fontsize=7, loc="upper left")
        ax.plot(x[name], values, color=colors[name], linewidth=1.1)
        ax.fill_between(x[name], values, np.maximum.accumulate(values), color="red", alpha=0.2, linewidth=0)
        ax.set_title(f"{name}: {notes[name]}" if notes and name in notes else name, fontsize=9, loc="left")
    for i, when in enumerate(markers):
        for ax in axes:
            ax.axvline(when, color="grey", linestyle=":", linewidth=0.8, label=marker_label if i == 0 and ax is overview and marker_label else None)
    if markers and marker_label:
        overview.legend(fontsize=8, loc="upper left")
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
