"""The promotion gate: a trained version serves only when it has earned it (champion/challenger,
as TFX's model validation).

A *candidate* (the version a job just trained) is promoted when, by its service's own
out-of-sample metric (:meth:`kryptobot.runtime.ModelRuntime.promotion`):

* it is at least as good as the naive baseline measured on the same holdout (never
  within a tolerance: a model that does not beat "no model" has nothing to offer), and
* it is not worse than the *champion* (the line's active version) by more than the
  service's tolerance. The champion's number was measured on its own holdout, usually
  older data, so the tolerance absorbs the noise of comparing two holdouts rather than
  asking a retrained model to beat a lucky predecessor.

Without a champion (the first version of a line) only the baseline counts. What the
framework does with the verdict is the training request's ``activate``: ``"if_better"``
follows it, ``true`` activates anyway, ``false`` never; the verdict is recorded with the
version in every case (``promotion`` in ``GET /models``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

#: the ``activate`` values of a training request
ACTIVATE_MODES = ("if_better", True, False)


@dataclass(frozen=True)
class Verdict:
    """The gate's answer for one candidate version."""

    promote: bool
    reason: str
    metric: str | None = None
    candidate: float | None = None
    baseline: float | None = None
    champion: float | None = None
    champion_version: str | None = None
    tolerance: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def lookup(metadata: Mapping[str, Any] | None, path: str) -> float | None:
    """The number at ``path`` ("metrics.ensemble.roc_auc") of a version's metadata; None when
    any step is missing or the value is not a finite number."""
    value: Any = metadata
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def judge(
    metric: str,
    candidate: float | None,
    baseline: float | None,
    champion: float | None,
    champion_version: str | None,
    tolerance: float,
    higher_is_better: bool = True,
) -> Verdict:
    """The verdict of the rule in the module docstring, with a reason a person can act on.

    ``champion`` is the active version's value of the same metric (None: no active
    version, or one that does not report the metric, e.g. trained before it existed).
    """
    sign = 1.0 if higher_is_better else -1.0
    common = dict(metric=metric, candidate=candidate, baseline=baseline, champion=champion,
                  champion_version=champion_version, tolerance=tolerance)
    if candidate is None:
        return Verdict(False, f"{metric} is undefined on the holdout (e.g. one class only): nothing shows it beats the naive baseline", **common)
    if baseline is None:
        return Verdict(False, f"no naive baseline of {metric} on the holdout to compare with", **common)
    if sign * (candidate - baseline) < 0:
        return Verdict(False, f"{metric} {candidate:.4f} is worse than the naive baseline's {baseline:.4f}", **common)
    beats = f"{metric} {candidate:.4f} is at least the naive baseline's {baseline:.4f}"
    if champion_version is None:
        return Verdict(True, f"{beats}; first version of its line", **common)
    if champion is None:
        return Verdict(True, f"{beats}; the active {champion_version} reports no {metric} to compare", **common)
    if sign * (candidate - champion) < -tolerance:
        return Verdict(
            False,
            f"{metric} {candidate:.4f} is worse than the active {champion_version}'s {champion:.4f} "
            f"by more than the tolerance {tolerance:g}",
            **common,
        )
    return Verdict(True, f"{beats} and within {tolerance:g} of the active {champion_version}'s {champion:.4f} or better", **common)


def judge_metadata(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    metric: str,
    path: str,
    baseline_path: str | None,
    tolerance: float,
    baseline_value: float | None = None,
    higher_is_better: bool = True,
) -> Verdict:
    """:func:`judge` reading the numbers from two versions' metadata: the metric at ``path``,
    the baseline at ``baseline_path`` of the candidate (or the constant ``baseline_value``)."""
    baseline = baseline_value if baseline_path is None else lookup(candidate, baseline_path)
    return judge(
        metric,
        lookup(candidate, path),
        baseline,
        None if champion is None else lookup(champion, path),
        None if champion is None else champion.get("version"),
        tolerance,
        higher_is_better,
    )


def always_promote(reason: str) -> Verdict:
    return Verdict(True, reason)
