"""The chromium policy of the browser tests (tests/helpers/browser.py): skip locally, fail when CI=1."""

from pathlib import Path

import pytest

from tests.helpers.browser import require_chromium

NOWHERE = Path("/nonexistent/chromium")


def test_a_missing_browser_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium-driver.*CI=1 makes this a failure"):
        require_chromium(NOWHERE)


@pytest.mark.parametrize("value", ["1", "true"])
def test_a_missing_browser_fails_in_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="/nonexistent/chromium not found.*a failure"):
        require_chromium(NOWHERE)


def test_a_present_browser_passes(tmp_path):
    (tmp_path / "chromium").touch()
    require_chromium(tmp_path / "chromium")
