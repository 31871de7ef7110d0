"""Response schemas common to every model service."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "trained", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="0..1")
    message: str | None = None
    details: dict[str, Any] | None = Field(
        None, description="e.g. epoch, loss while a neural model trains; once it ended, promotion: the gate's verdict per version"
    )
    metrics: dict[str, Any] | None = None
    error: str | None = None
    versions: list[str] = Field(default_factory=list, description="versions this job created")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


def job_status(record: dict) -> JobStatus:
    return JobStatus.model_validate({k: v for k, v in record.items() if k in JobStatus.model_fields})


class Promotion(BaseModel):
    """The promotion gate's verdict on a version (:mod:`kryptobot.promotion`), recorded when
    its training job ended."""

    model_config = ConfigDict(extra="allow")

    promote: bool = Field(description="the gate passed it: at least the naive baseline, and the active version within the tolerance")
    reason: str
    metric: str | None = Field(None, description="the service's metric, out of sample, e.g. roc_auc or skill")
    candidate: float | None = Field(None, description="this version's value of it")
    baseline: float | None = Field(None, description="the naive baseline's, on the same holdout")
    champion: float | None = Field(None, description="the then active version's")
    champion_version: str | None = None
    tolerance: float | None = None
    activate: Literal["if_better"] | bool | None = Field(None, description="what the training request asked for")
    activated: bool | None = Field(None, description="whether the job activated it")
    outcome: str | None = Field(None, description="what happened, for a person")
    decided_at: str | None = None


class ModelInfo(BaseModel):
    version: str
    line: str
    active: bool
    created_at: str
    params: dict[str, Any] | None = None
    features: list[str] | None = None
    data_range: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    artifacts: dict[str, str] = Field(description="file -> sha256")
    reports: list[str] = Field(default_factory=list)
    parent: str | None = Field(None, description="version this one was derived from (feature selection)")
    promotion: Promotion | None = Field(None, description="the promotion gate's verdict (null: trained before the gate)")

    @classmethod
    def from_metadata(cls, meta: dict, active: bool) -> "ModelInfo":
        return cls.model_validate({**{k: v for k, v in meta.items() if k in cls.model_fields}, "active": active})


class ModelList(BaseModel):
    models: list[ModelInfo]


class FieldError(BaseModel):
    field: str = Field(description="the input at fault, e.g. instances[0].bars.close")
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer of every service."""

    error: str = Field(description="the error's kind, e.g. ValidationError, NotFound, ModelNotReady, HTTPError")
    detail: str = Field(description="what went wrong, for a person")
    field: str | None = Field(None, description="the input at fault, when one is")
    errors: list[FieldError] | None = Field(None, description="every invalid field (validation errors only)")
    request_id: str | None = Field(description="the X-Request-ID of the request, to find it in the logs")


class NotReadyBody(BaseModel):
    """The 503 of a model service's GET /health/ready: it has no active model."""

    status: Literal["not ready"]
    error: str = Field(description="ModelNotReady")
    detail: str = Field(description="why: no model trained yet, or the active version's load error")
