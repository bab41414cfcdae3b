"""What the browser tests share: Debian's chromium driven headless by Playwright for Python, on a
phone-sized viewport, against the app served on a local port in sandbox mode (the fake WeChat mounted
under /sandbox stands in for OAuth and WeChat Pay). Skipped only where /usr/bin/chromium is missing
(.ci/run installs it); ``playwright install`` is never needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.serving import served_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)"
)


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, Any]]:
    """The app with the demo data, in sandbox mode, served on a local port (threaded: the sandbox's
    fake WeChat calls back into the same server)."""
    with served_demo(database_url) as (origin, app):
        yield origin, app
