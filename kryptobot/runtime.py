"""The model runtime contract: what a model service supplies to the shared framework.

Two roles, kept apart (after Seldon MLServer's runtime / server split):

* :class:`ModelVersion` is one trained, loadable model: ``save`` writes its artifacts and
  reports, ``load`` reads them back (from the store, hashes verified), ``warmup`` makes
  the first real request fast, ``metadata`` describes it.
* :class:`ModelRuntime` is one service's model code: the request schemas, the training
  jobs it offers (``/train`` and, for the signal service, ``/feature-selection``),
  ``predict`` over the active versions of its lines, the Swagger example, and
  ``promotion``: whether a new version is good enough to serve (:mod:`kryptobot.promotion`).

The framework calls nothing else: a model package is reached only through this contract.

Everything else (HTTP endpoints, job processes, the store, metrics, auth, errors) is
written once in :mod:`kryptobot.jobs` and ``services.framework``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import pandas as pd
from pydantic import BaseModel

from kryptobot.data import DataSpec, load_bars
from kryptobot.promotion import Verdict, always_promote
from kryptobot.settings import Settings
from kryptobot.store import ModelStore

#: ``progress(fraction=None, message=None, force=False, **details)``: updates the job record.
#: Calls are throttled (a few per second) unless ``force``; ``details`` (epoch, loss...)
#: are shown on ``GET /train/{id}``.
ProgressFn = Callable[..., None]


class ModelVersion(ABC):
    """One trained model of a line; immutable once saved."""

    line: str
    #: the store's metadata.json of this version, set when loaded from the store
    stored_metadata: dict | None = None

    @abstractmethod
    def save(self, artifacts: Path, reports: Path) -> None:
        """Write everything ``load`` needs into ``artifacts`` and the plots/metrics into ``reports``."""

    @classmethod
    @abstractmethod
    def load(cls, artifacts: Path, metadata: dict) -> "ModelVersion":
        """Rebuild the model from a verified artifacts directory."""

    @abstractmethod
    def metadata(self) -> dict:
        """JSON-able description: params, feature list, data range, metrics."""

    def warmup(self) -> None:
        """Run a few predictions so the first request does not pay for compilation."""

    @property
    def version(self) -> str | None:
        """The store's name of this version (``signal-v3``); None before it is stored."""
        return None if self.stored_metadata is None else self.stored_metadata["version"]


@dataclass
class TrainContext:
    """What a training job gets besides its validated config."""

    settings: Settings
    store: ModelStore
    runtime: "ModelRuntime"
    progress: ProgressFn = field(default=lambda *a, **k: None)

    def load_bars(self, spec: DataSpec) -> dict[str, pd.DataFrame]:
        return load_bars(spec, csv_dir=self.settings.csv_dir, market_data_dir=self.settings.market_data_dir)

    def active_model(self, line: str) -> ModelVersion | None:
        version = self.store.active().get(line)
        return None if version is None else self.runtime.load_version(self.store, version)


@dataclass(frozen=True)
class JobKind:
    """A background job a service offers: its endpoint path, config schema and method name."""

    path: str
    config: type[BaseModel]
    method: str
    summary: str = ""


class ModelRuntime(ABC):
    """One model service's model code and schemas; the framework does the rest.

    Subclasses set the class attributes and implement ``train``, ``predict`` and
    ``predict_example``.
    """

    name: ClassVar[str]
    lines: ClassVar[tuple[str, ...]]
    version_classes: ClassVar[Mapping[str, type[ModelVersion]]]
    TrainConfig: ClassVar[type[BaseModel]]
    Instance: ClassVar[type[BaseModel]]
    Prediction: ClassVar[type[BaseModel]]
    PredictOptions: ClassVar[type[BaseModel] | None] = None
    extra_jobs: ClassVar[tuple[JobKind, ...]] = ()
    #: a report every version has (the Swagger example of GET /reports/{name})
    report_example: ClassVar[str] = "training_results.json"
    #: ``/predict`` bodies up to this size are scored on the server's event loop instead of
    #: a worker thread. For a runtime that scores such a body in well under a millisecond:
    #: the hop to a thread and back would cost about as much again, and lengthen the tail
    #: when requests queue; the loop is blocked for that long. 0: always a worker thread.
    inline_predict_bytes: ClassVar[int] = 0

    def __init__(self, settings: Settings):
        self.settings = settings

    @classmethod
    def jobs(cls) -> tuple[JobKind, ...]:
        return (JobKind("/train", cls.TrainConfig, "train", "Train a new model version in the background"),) + tuple(
            cls.extra_jobs
        )

    @abstractmethod
    def train(self, config: BaseModel, ctx: TrainContext) -> list[ModelVersion]:
        """Train new versions (one per line trained); runs in a separate process."""

    @abstractmethod
    def predict(
        self, models: Mapping[str, ModelVersion], instances: list[Any], options: BaseModel | None
    ) -> list[dict]:
        """One result per instance from the active ``models`` (keyed by line).

        Must be CPU-only and thread-safe: the framework calls it from a worker thread
        (or, for bodies up to ``inline_predict_bytes``, from the event loop).
        """

    @classmethod
    @abstractmethod
    def predict_example(cls) -> dict:
        """A ``/predict`` body that works as it is: the Swagger example, also used by tests."""

    def promotion(self, candidate: dict, champion: dict | None) -> Verdict:
        """May the freshly trained version ``candidate`` (its metadata) replace ``champion``
        (the metadata of its line's active version; None for a line's first version)?

        The rule is :mod:`kryptobot.promotion`'s, by the service's own out-of-sample
        metric. This default promotes every version; a runtime with a metric and a naive
        baseline overrides it.
        """
        return always_promote("this service declares no promotion metric: every trained version is promoted")

    def version_class(self, line: str) -> type[ModelVersion]:
        return self.version_classes[line]

    def load_version(self, store: ModelStore, version: str) -> ModelVersion:
        meta = store.metadata(version)
        artifacts = store.verified_artifacts(version)
        model = self.version_class(meta["line"]).load(artifacts, meta)
        model.stored_metadata = meta
        return model


def iso_day(ts) -> str:
    return pd.Timestamp(ts).date().isoformat()


def data_range_summary(source: str, per_symbol: dict[str, dict]) -> dict:
    """A version's ``data_range``: every service's has ``start`` and ``end`` (the trader uses
    a model only on bars after ``end``), plus what each symbol contributed."""
    return {
        "source": source,
        "symbols": list(per_symbol),
        "start": min(v["start"] for v in per_symbol.values()),
        "end": max(v["end"] for v in per_symbol.values()),
        "per_symbol": per_symbol,
    }
