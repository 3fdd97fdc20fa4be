"""The Dagster UI in a real browser, the way an operator uses it: every action is a click.

GraphQL (``DagsterGraphQL``) is only used to wait for and assert state (a run's status, a
sensor's or schedule's status); launching, terminating, re-executing and toggling happen in the
page. Each test writes the screenshots the README's operating guide shows (to a temp dir;
``make docs-images`` writes them to ``docs/images/``).
"""

from __future__ import annotations

import re
import time

import pytest

from blade_pipeline_tests.live_stack import LiveStack, assert_catalog_holds_exactly_the_staged_items
from blade_pipeline_tests.ui.conftest import BIG_DAY, IMAGES, SMALL_DAY

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser tests need Playwright for Python: pip install playwright (part of .[dev])")
expect = sync_api.expect

pytestmark = pytest.mark.slow

DATA_TYPES = ("maintenance", "maintenance_unit_b", "readiness", "sortie", "supply", "supply_drops",
              "sortie_events")
CSV_TYPES = ("supply_drops",)  # these also have a landed asset (its "Asset checks" row: -)
GRAPH_VIEWPORT = {"width": 2200, "height": 1200}
RUN_URL = re.compile(r"/runs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: How long the UI may take to show what the server already knows (it polls).
UI_TIMEOUT = 30_000


def screenshot(page, name: str) -> None:
    """<IMAGES>/<name>.png of the current viewport."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"{name}.png"))


def nav(page, name: str) -> None:
    """Click an entry of the left navigation (Overview, Runs, Catalog, Jobs, ...)."""
    page.get_by_role("navigation").get_by_role("link", name=re.compile(rf"\b{name}$")).click()


def open_asset(page, data_type: str, name: str) -> None:
    """Click an asset in the Catalog's list, e.g. blade / sortie / staged."""
    # Slashes escaped: Playwright passes the pattern on as a /.../ literal.
    page.get_by_role("link", name=re.compile(rf"^blade \/ {data_type} \/ {name}\b")).first.click()


def icon_button(scope, icon: str):
    """A button shown as an icon only (e.g. zoom_in, settings), by the icon's label."""
    return scope.get_by_role("button").filter(
        has=scope.get_by_role("img", name=icon, exact=True)).filter(has_not_text=re.compile(r"\w"))


def run_id_of(page) -> str:
    expect(page).to_have_url(RUN_URL, timeout=UI_TIMEOUT)
    return RUN_URL.search(page.url).group(1)


def launch_partition(page, job: str, day: str, shot: str | None = None) -> str:
    """Jobs -> job -> Partitions -> Materialize… -> the day -> Launch 1 run -> the run page.
    Returns the new run's id."""
    page.goto("/")
    nav(page, "Jobs")
    page.get_by_role("link", name=job).click()
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Launch runs to materialize 2 assets")).to_be_visible()
    dialog.get_by_role("button", name="Show all partitions").click()  # older than 90 days
    selection = dialog.get_by_role("textbox")
    selection.fill(day)
    selection.press("Enter")
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    if shot:
        screenshot(page, shot)
    launch.click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(toast).to_be_visible()
    page.get_by_role("link", name="View", exact=True).click()  # the toast's link to the run
    run_id = run_id_of(page)
    # The toast stays while the pointer rests on it; moved away, it goes after a few seconds
    # (and out of the screenshots).
    page.mouse.move(5, page.viewport_size["height"] / 2)
    expect(toast).to_be_hidden(timeout=UI_TIMEOUT)
    return run_id


def run_status_tag(page, status: str):
    """The status tag in the run page's header (Started, Success, Canceled, ...)."""
    return page.get_by_text(status, exact=True).first


def metadata_row(page, key: str):
    """The row of a metadata table whose first cell is ``key``."""
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))


# -- asset graph -----------------------------------------------------------------------------


def show_whole_graph(page) -> None:
    """All groups expanded and side by side, the asset tree hidden, the graph fitted."""
    settings = icon_button(page, "settings")
    for item in ("Expand all groups", "Change graph to vertical orientation"):
        settings.click()
        page.get_by_role("menuitem", name=re.compile(item)).click()
        page.keyboard.press("Escape")
    icon_button(page, "panel_show_right").click()  # hide the asset tree beside the graph
    # A double click on the empty canvas (its bottom left corner) fits the graph to the view.
    navigation = page.get_by_role("navigation").bounding_box()
    page.mouse.dblclick(navigation["x"] + navigation["width"] + 30,
                        page.viewport_size["height"] - 30)
    # Fitted, the graph is drawn with node details (below some zoom it draws bare boxes).
    expect(page.get_by_text("Asset checks", exact=True).filter(visible=True)) \
        .to_have_count(2 * len(DATA_TYPES) + len(CSV_TYPES))


def test_asset_graph_shows_every_data_type_with_its_assets_and_checks(page):
    # seven groups side by side (the CSV one three assets tall): fitted in 1440x900 the graph
    # is drawn as bare boxes, so this picture is taken wider
    page.set_viewport_size(GRAPH_VIEWPORT)
    page.goto("/")
    nav(page, "Lineage")
    expect(page).to_have_url(re.compile(r"/asset-groups"))
    for data_type in DATA_TYPES:
        expect(page.get_by_text(f"blade_{data_type}", exact=True).first).to_be_visible()
    show_whole_graph(page)
    for data_type in DATA_TYPES:
        expect(page.get_by_text(f"blade_{data_type}", exact=True).filter(visible=True)) \
            .to_be_in_viewport()
    for name in ("staged", "catalog"):
        expect(page.get_by_text(name, exact=True).filter(visible=True)) \
            .to_have_count(len(DATA_TYPES))
    # Each asset shows its checks' summary (e.g. "0 / 4 Passed"): staged has schema_conforms,
    # invalid_fraction, schema_changed and freshness; catalog has reconciled and freshness.
    for count in (4, 2):
        expect(page.get_by_text(re.compile(rf"^\d+ / {count} ")).filter(visible=True)) \
            .to_have_count(len(DATA_TYPES))
    screenshot(page, "asset-graph")

    for data_type in DATA_TYPES:  # the checks by name, on each staged asset's Checks tab
        nav(page, "Catalog")
        open_asset(page, data_type, "staged")
        page.get_by_role("tab", name="Checks").click()
        for check in ("schema_conforms", "invalid_fraction", "schema_changed", "freshness"):
            expect(page.get_by_text(check, exact=True).first).to_be_visible()
        page.get_by_text("schema_conforms", exact=True).first.click()  # its details
        expect(page.get_by_text("blocking", exact=True).first).to_be_visible()


# -- launch a partition ----------------------------------------------------------------------


def test_launch_a_partition_from_the_partitions_view_and_see_its_metadata(page, ui_stack):
    stack: LiveStack = ui_stack
    run_id = launch_partition(page, "blade_sortie_job", SMALL_DAY, shot="partitions-launch")
    assert stack.gql.wait_status(run_id, {"SUCCESS"}, timeout=240) == "SUCCESS"
    expect(run_status_tag(page, "Success")).to_be_visible(timeout=UI_TIMEOUT)

    extracted = stack.warehouse.query_arrow(
        "SELECT count(*) AS n FROM main.blade.blade_sortie_data "
        f"WHERE CAST(last_modified AS DATE) = DATE '{SMALL_DAY}'").column(0)[0].as_py()
    staged = stack.lake.parquet_file(stack.lake.partition_dir("sortie", SMALL_DAY))
    valid = staged.metadata.num_rows
    assert 0 < valid < extracted  # the seeded day holds some invalid rows

    nav(page, "Catalog")
    open_asset(page, "sortie", "staged")
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_placeholder("Filter by name").fill(SMALL_DAY)
    page.get_by_text(SMALL_DAY, exact=True).filter(visible=True).first.click()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    for key, value in (("rows_extracted", extracted), ("rows_valid", valid),
                       ("rows_quarantined", extracted - valid), ("dagster/row_count", valid)):
        expect(metadata_row(page, key)).to_contain_text(str(value))
    screenshot(page, "asset-metadata")

    preview = metadata_row(page, "preview")
    preview.scroll_into_view_if_needed()
    expect(preview.get_by_role("columnheader", name="sortie_id")).to_be_visible()
    first_id = preview.locator("tbody tr").first.locator("td").first.inner_text().strip()
    staged_ids = set(staged.read(columns=["item_id"]).column(0).to_pylist())
    assert f"SORTIE-{first_id}" in staged_ids, f"preview row {first_id} is not a staged item"
    screenshot(page, "asset-preview")

    assert stack.catalog.stats()["data_sources"]["BLADE:sortie"] == valid

    # The day's run checked the catalog asset after its upload: `reconciled` passed for the day;
    # `freshness` judges the day due by the real clock (yesterday), never ingested here: late.
    nav(page, "Catalog")
    open_asset(page, "sortie", "catalog")
    page.get_by_role("tab", name="Checks").click()
    for check in ("reconciled", "freshness"):
        expect(page.get_by_text(check, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    page.get_by_text("freshness", exact=True).first.click()
    expect(page.get_by_text(re.compile(r"\[sortie\] \d{4}-\d\d-\d\d is late: not uploaded"))
           ).to_be_visible(timeout=UI_TIMEOUT)
    screenshot(page, "asset-checks")
    page.get_by_text("reconciled", exact=True).first.click()
    expect(page.get_by_text(SMALL_DAY, exact=True).first).to_be_visible(timeout=UI_TIMEOUT)
    expect(metadata_row(page, "staged_valid")).to_contain_text(str(valid))
    expect(metadata_row(page, "missing_or_different")).to_contain_text("0")
    screenshot(page, "asset-check-reconciled")


@pytest.mark.extended  # ~1 min: the extended tier (make test stays ~15 min)
def test_a_backfill_of_a_range_launched_by_clicks_is_one_run(page, ui_stack):
    """Materialize… with a range of days -> Launch backfill: the backfill is one run over
    the range (single-run backfill policy), and each day reaches the catalog."""
    stack: LiveStack = ui_stack
    page.goto("/")
    nav(page, "Jobs")
    page.get_by_role("link", name="blade_readiness_job").click()
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Show all partitions").click()
    selection = dialog.get_by_role("textbox")
    selection.fill(f"[{SMALL_DAY}...{BIG_DAY}]")
    selection.press("Enter")
    expect(dialog.get_by_text("2 partitions", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch backfill")
    expect(launch).to_be_enabled()
    screenshot(page, "backfill-range-launch")
    launch.click()
    range_tags = {"dagster/asset_partition_range_start": SMALL_DAY,
                  "dagster/asset_partition_range_end": BIG_DAY}
    deadline = time.monotonic() + 180  # the backfill daemon creates the run on its next tick
    runs: list[dict] = []
    while time.monotonic() < deadline and not runs:
        runs = stack.gql.runs(range_tags)
        time.sleep(1)
    assert len(runs) == 1, "the backfill of two days is not one run"
    [run] = runs
    assert "dagster/backfill" in {t["key"] for t in run["tags"]}
    assert stack.gql.wait_status(run["runId"], {"SUCCESS"}, timeout=300) == "SUCCESS"
    time.sleep(2)
    assert len(stack.gql.runs(range_tags)) == 1
    assert_catalog_holds_exactly_the_staged_items(stack, "readiness", SMALL_DAY, BIG_DAY)


# -- pause (Terminate) and resume (Re-execute from failure) ------------------------------------


def test_terminate_mid_upload_then_reexecute_from_failure_by_clicks_is_exact(page, ui_stack):
    stack: LiveStack = ui_stack
    lake, gql = stack.lake, stack.gql
    run_id = launch_partition(page, "blade_maintenance_job", BIG_DAY)
    terminate = page.get_by_role("button", name=re.compile(r"\bTerminate$"))
    expect(terminate).to_be_visible(timeout=UI_TIMEOUT)

    checkpoint = lake.checkpoint_path("maintenance", BIG_DAY)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # until the catalog acknowledged a first batch
        saved = lake.read_json(checkpoint)
        if saved and saved["acknowledged"]:
            break
        assert gql.status(run_id) not in {"SUCCESS", "FAILURE"}, "upload finished too fast"
        time.sleep(0.2)
    else:
        pytest.fail("the upload never started")
    terminate.click()  # "pause"
    dialog = page.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Terminate 1 run")
    expect(confirm).to_be_visible()
    screenshot(page, "run-terminate")
    confirm.click()
    assert gql.wait_status(run_id, {"CANCELED"}) == "CANCELED"
    expect(run_status_tag(page, "Canceled")).to_be_visible(timeout=UI_TIMEOUT)
    paused = lake.read_json(checkpoint)
    staged = lake.parquet_file(lake.partition_dir("maintenance", BIG_DAY)).metadata.num_rows
    assert 0 < paused["processed"] < staged, "terminated after the upload had finished"

    reexecute = page.get_by_role("button", name=re.compile(r"^Re-execute all"))
    reexecute.locator("xpath=following::button[1]").click()  # its dropdown
    from_failure = page.get_by_role("menuitem", name=re.compile(r"\bFrom failure$"))
    expect(from_failure).to_be_enabled()
    screenshot(page, "reexecute-from-failure")
    from_failure.click()  # "resume"
    expect(page).not_to_have_url(re.compile(run_id), timeout=UI_TIMEOUT)
    resumed = run_id_of(page)
    assert gql.wait_status(resumed, {"SUCCESS"}, timeout=300) == "SUCCESS"
    expect(run_status_tag(page, "Success")).to_be_visible(timeout=UI_TIMEOUT)

    final = lake.read_json(checkpoint)
    assert final["processed"] == final["total"] == staged
    assert_catalog_holds_exactly_the_staged_items(stack, "maintenance", BIG_DAY)


# -- sensors and schedules -------------------------------------------------------------------

INSTIGATOR_STATUS = """
query Status($sensor: SensorSelector!, $schedule: ScheduleSelector!) {
  sensorOrError(sensorSelector: $sensor) { ... on Sensor { sensorState { status } } }
  scheduleOrError(scheduleSelector: $schedule) { ... on Schedule { scheduleState { status } } }
}"""


def instigator_status(stack: LiveStack, sensor: str, schedule: str) -> tuple[str, str]:
    """(sensor status, schedule status): RUNNING or STOPPED, as the instance stores them."""
    where = {"repositoryLocationName": "blade_pipeline", "repositoryName": "__repository__"}
    data = stack.gql.query(INSTIGATOR_STATUS, sensor={**where, "sensorName": sensor},
                           schedule={**where, "scheduleName": schedule})
    return (data["sensorOrError"]["sensorState"]["status"],
            data["scheduleOrError"]["scheduleState"]["status"])


def wait_instigators(stack: LiveStack, sensor: str, schedule: str,
                     wanted: tuple[str, str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (seen := instigator_status(stack, sensor, schedule)) != wanted:
        assert time.monotonic() < deadline, f"{sensor}, {schedule} are {seen}, wanted {wanted}"
        time.sleep(0.3)


def test_toggle_a_sensor_and_a_schedule_off_and_on(page, ui_stack):
    sensor, schedule = "blade_readiness_changes", "blade_readiness_daily"
    wait_instigators(ui_stack, sensor, schedule, ("RUNNING", "RUNNING"))  # enabled source
    # The sensor's one tick (see SENSOR_INTERVAL) is over once it has stored its cursor.
    deadline = time.monotonic() + 120
    while not ui_stack.gql.sensor_cursor(sensor):
        assert time.monotonic() < deadline, f"{sensor} never ticked"
        time.sleep(1)
    page.goto("/")
    nav(page, "Automation")
    switches = {}
    for name, kind in ((sensor, "sensors"), (schedule, "schedules")):
        row = page.locator("div[data-index]").filter(
            has=page.locator(f'a[href$="/{kind}/{name}"]'))
        expect(row).to_have_count(1)
        # The switch is the row's last checkbox (the first one selects the row).
        switches[name] = (row.get_by_role("checkbox").last,
                          row.locator("label").filter(has=page.locator("input")).last)
    for name in (sensor, schedule):
        state, clickable = switches[name]
        # (a CI run of 4adaba5 saw the switch unchecked for 5 s after GraphQL said RUNNING)
        expect(state).to_be_checked(timeout=UI_TIMEOUT)
        clickable.click()
        expect(state).not_to_be_checked()
    wait_instigators(ui_stack, sensor, schedule, ("STOPPED", "STOPPED"))
    screenshot(page, "automation-toggles")
    for name in (sensor, schedule):
        state, clickable = switches[name]
        clickable.click()
        expect(state).to_be_checked()
    wait_instigators(ui_stack, sensor, schedule, ("RUNNING", "RUNNING"))


# -- a schema change -------------------------------------------------------------------------


@pytest.mark.extended  # ~1 min: the extended tier (make test stays ~15 min)
def test_a_column_added_while_the_stack_runs_shows_on_the_schema_changed_check(page, ui_stack):
    stack: LiveStack = ui_stack
    first = launch_partition(page, "blade_maintenance_job", SMALL_DAY)  # v1: the table as seeded
    assert stack.gql.wait_status(first, {"SUCCESS"}, timeout=240) == "SUCCESS"
    stack.warehouse.query_arrow(
        "ALTER TABLE main.blade.blade_maintenance_data ADD COLUMN remarks STRING")
    changed = launch_partition(page, "blade_maintenance_job", SMALL_DAY)
    assert stack.gql.wait_status(changed, {"SUCCESS"}, timeout=240) == "SUCCESS"

    nav(page, "Catalog")
    open_asset(page, "maintenance", "staged")
    page.get_by_role("tab", name="Checks").click()
    page.get_by_text("schema_changed", exact=True).first.click()
    expect(page.get_by_text(re.compile(
        r"schema v2 against the expected v1 \(allowed by the policy\): ADD_COLUMN remarks "
        r"string: evolved \(on_new_column: evolve\)")).first).to_be_visible(timeout=UI_TIMEOUT)
    expect(metadata_row(page, "schema_version")).to_contain_text("2")
    screenshot(page, "asset-check-schema-changed")
