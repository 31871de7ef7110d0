"""Response schemas common to every model service."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class JobStatus(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "trained", "succeeded", "failed", "cancelled"]
    progress: float = Field(description="0..1")
    message: str | None = None
    details: dict[str, Any] | None = Field(None, description="e.g. epoch, loss while a neural model trains")
    metrics: dict[str, Any] | None = None
    error: str | None = None
    versions: list[str] = Field(default_factory=list, description="versions this job created")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


def job_status(record: dict) -> JobStatus:
    return JobStatus.model_validate({k: v for k, v in record.items() if k in JobStatus.model_fields})


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

    @classmethod
    def from_metadata(cls, meta: dict, active: bool) -> "ModelInfo":
        return cls.model_validate({**{k: v for k, v in meta.items() if k in cls.model_fields}, "active": active})


class ModelList(BaseModel):
    models: list[ModelInfo]
