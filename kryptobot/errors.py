"""One exception hierarchy for the whole system.

Every error carries the HTTP status it maps to and, where a caller's input is at
fault, the name of the offending field, so the services can turn any of them into
one JSON error shape without knowing the details.
"""
from __future__ import annotations


class KryptoError(Exception):
    """Base of all expected errors. ``field`` names the input at fault, if any."""

    status_code = 500

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        body = {"error": type(self).__name__, "detail": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(KryptoError):
    """The caller's data is unusable (NaN, too few bars, unknown feature...)."""

    status_code = 422


class DataError(InvalidInput):
    """Market data is malformed: missing columns, unsorted or duplicate timestamps."""


class DataNotFound(KryptoError):
    """A provider has no data for the symbol or range asked for."""

    status_code = 404


class NotFound(KryptoError):
    status_code = 404


class Conflict(KryptoError):
    status_code = 409


class Busy(KryptoError):
    """The service is doing as much of this as it allows at once; try again later."""

    status_code = 429


class Unauthorized(KryptoError):
    status_code = 401


class ModelNotReady(KryptoError):
    """No active model is loaded (or it failed to load)."""

    status_code = 503


class IntegrityError(KryptoError):
    """A stored artifact does not match the hash recorded when it was written."""

    status_code = 500


class TrainingError(KryptoError):
    """Training could not produce a model (e.g. too few labelled events)."""

    status_code = 422


class ServiceUnavailable(KryptoError):
    """A downstream service (model service, Redis) cannot be reached."""

    status_code = 503
