"""Where MLflow keeps runs: store and artifact URIs made absolute, so runs from any folder share one store.

Kept free of Lightning imports: the compare step and tests use it without loading the training stack."""

from __future__ import annotations

from pathlib import Path

SQLITE_PREFIX = "sqlite:///"


def absolute_tracking_uri(uri: str) -> str:
    """Make a relative sqlite:/// path absolute (other URIs are returned unchanged)."""
    if uri.startswith(SQLITE_PREFIX) and not uri.startswith(SQLITE_PREFIX + "/"):
        return SQLITE_PREFIX + str(Path(uri[len(SQLITE_PREFIX) :]).resolve())
    return uri


def artifact_uri(location: str) -> str:
    """A local artifact folder as an absolute file:// URI (URIs with a scheme are returned unchanged)."""
    return location if "://" in location else Path(location).resolve().as_uri()
