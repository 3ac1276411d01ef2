"""Typed exceptions for user-facing errors.

Library code raises these; only the command line (``caloreco.__main__``) turns them into a
one-line ``ERROR`` and an exit code. Messages name the argument or field, the rule, the bad
value and, on a new line, the file/event context.
"""

from __future__ import annotations

from pathlib import Path


class CalorecoError(Exception):
    """Base class of every error caused by user input or configuration."""


class ConfigError(CalorecoError, ValueError):
    """An argument or configuration value breaks a rule."""


class InputFileError(CalorecoError):
    """A file cannot be read: missing, truncated, foreign format or missing columns."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{message}\n  in file: {self.path}")


class InvalidDataError(CalorecoError, ValueError):
    """Data values break a rule: NaN/inf, wrong shape, unknown cell id, inconsistent lengths."""

    def __init__(self, message: str, *, source: str | None = None, event: int | None = None) -> None:
        where = []
        if source is not None:
            where.append(f"file: {source}")
        if event is not None:
            where.append(f"event: {event}")
        self.source = source
        self.event = event
        super().__init__(message + (f"\n  in {', '.join(where)}" if where else ""))


class EmptyEventError(InvalidDataError):
    """An event has no hits where hits are required."""


class MissingDependencyError(CalorecoError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(f"{feature} needs the package '{package}': pip install {package}")
