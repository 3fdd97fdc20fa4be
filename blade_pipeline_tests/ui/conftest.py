"""Browser tests of the Dagster UI: Debian's Chromium driven by Playwright (sync API).

The browser is Debian's package (``apt-get install -y chromium``), never a Playwright browser
download. Without it, or without the ``playwright`` Python package, these tests are skipped
with a message naming what to install. The stack they click through is a live one on loopback:
mock warehouse, slow mock catalog, dagster-webserver + dagster-daemon on a fresh PostgreSQL
database.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from blade_pipeline_tests.conftest import END_DATE
from blade_pipeline_tests.live_stack import LiveStack, live_dagster, make_pg_dagster_home
from blade_pipeline_tests.postgres import fresh_pg_database, pg_answers

CHROMIUM = Path("/usr/bin/chromium")
#: Headless, sandbox-less (root in CI) and quiet: no background networking of any kind.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-pings",
]
VIEWPORT = {"width": 1440, "height": 900}
#: Where the screenshots go: a temp dir, so that `make test` leaves the work tree clean;
#: `make docs-images` points it at docs/images to refresh the README's pictures.
IMAGES = Path(os.environ.get("BLADE_SCREENSHOT_DIR")
              or Path(tempfile.gettempdir()) / "blade-ui-screenshots")

#: Rows per table, seeded over the two days before END_DATE: Sunday SMALL_DAY gets few sorties
#: (~12.6k), Monday BIG_DAY many maintenance rows (~120k, a long upload to terminate).
#: Each change sensor ticks once, when the daemon starts, and not again during the tests: a
#: sensor switched off while the daemon is in the middle of its tick can be switched back on by
#: the tick's end (Dagster writes the sensor's state back), which would make the toggle test flaky.
SENSOR_INTERVAL = "3600"
UI_ROWS = 150_000
SMALL_DAY = (END_DATE - dt.timedelta(days=2)).isoformat()
BIG_DAY = (END_DATE - dt.timedelta(days=1)).isoformat()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so ``page`` can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Debian's Chromium, headless, for the whole session (skips when it cannot run)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the browser tests need Playwright for Python: pip install playwright "
               "(part of .[dev]; never run `playwright install`, Debian's chromium is used)")
    if not CHROMIUM.exists():
        pytest.skip(f"the browser tests need Debian's Chromium at {CHROMIUM}: "
                    "apt-get install -y chromium (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def ui_stack(browser, start_warehouse, start_catalog, tmp_path_factory) -> Iterator[LiveStack]:
    """The stack the browser tests click through (started only once a browser runs; stopped
    after the module, not left running through the rest of the suite)."""
    if not pg_answers():
        pytest.skip("PostgreSQL does not answer on 127.0.0.1:5432 (CI starts it; see .ci/run)")
    warehouse = start_warehouse(UI_ROWS, "--days", "2")
    # 150 ms per catalog request: the big day's upload lasts long enough to click Terminate.
    catalog = start_catalog("--latency-ms", "150")
    workdir = tmp_path_factory.mktemp("ui_stack")
    with fresh_pg_database("blade_ui") as pg_url, \
            live_dagster(warehouse, catalog, make_pg_dagster_home(workdir / "dagster_home"),
                         pg_url, workdir, BLADE_SENSOR_INTERVAL_SECONDS=SENSOR_INTERVAL) as stack:
        # What the "Join the Dagster community" dialog's Skip button records (it would cover
        # every first page otherwise).
        stack.gql.query("mutation { setNuxSeen }")
        yield stack


@pytest.fixture
def page(browser, ui_stack, request, tmp_path) -> Iterator:
    """A fresh browser context (no stored UI settings) on the Dagster UI, 1440x900."""
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_stack.base_url,
                                  locale="en-US", timezone_id="UTC")
    context.set_default_timeout(30_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            shot = tmp_path / "failure.png"
            tab.screenshot(path=str(shot))
            print(f"browser at failure: {tab.url}, screenshot {shot}")
        context.close()
