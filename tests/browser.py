"""Debian's Chromium (/usr/bin/chromium), driven by Playwright: never a browser Playwright downloads.

Without the browser the suite skips, except under CI (CI=true), where it fails:
.ci/run installs Debian's chromium and the test extra installs playwright.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root in a sandbox with no network but loopback: no sandbox, no GPU, and none
# of Chromium's own calls home (they are refused here, many at a time).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 "--disable-default-apps", "--metrics-recording-only", "--mute-audio"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


def require_browser() -> None:
    """Skip without a browser; under CI, fail: CI must run the browser suite."""
    missing = _missing()
    if missing:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{missing}: CI must run the browser tests, not skip them")
        pytest.skip(missing)


@contextmanager
def chromium():
    """A headless Chromium for the duration of the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
