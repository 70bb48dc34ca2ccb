"""One chromium policy for the browser tests: without the browser they skip with the reason on a developer
machine, and fail when CI=1 (set by .ci/run), so CI can never pass without running them (CONTRIBUTING.md)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium(*paths: Path) -> None:
    """Skip (locally) or fail (CI=1) unless every path exists; the message names the packages to install."""
    missing = [str(path) for path in paths if not path.exists()]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} not found: install the Debian packages `chromium chromium-driver` "
        f"(`{INSTALL}`, as .ci/run does)"
    )
    if in_ci():
        pytest.fail(f"{message}; CI=1, so a missing browser is a failure", pytrace=False)
    pytest.skip(f"{message}; skipped because CI is not set (CI=1 makes this a failure)")


@contextmanager
def browser_env() -> Iterator[Mapping[str, str]]:
    """The environment for a Chromium process, with TMPDIR a fresh folder removed afterwards: Chromium leaves its
    singleton-socket folders (``org.chromium.Chromium.*``) in TMPDIR. Short, under the system's temporary folder,
    not in pytest's ``tmp_path``: a Unix socket's path must stay under 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as scratch:
        yield {**os.environ, "TMPDIR": scratch}
