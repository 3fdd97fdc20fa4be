"""Schemathesis fuzzing of the catalog's OpenAPI spec against the real service (DESIGN §9):
no 5xx, no crash, every error a JSON body with a reason.

Each operation of the spec served at ``/openapi.json`` is fuzzed with schema-conforming
(positive) and schema-violating (negative) requests drawn from its Hypothesis strategy, a fixed
number of examples per operation, derandomized so every run sends the same requests.
The spec types the uploaded files as opaque binary, so positive cases also send files built
from BLADE-item-like JSON (valid and broken fields mixed), valid metadata and timestamps, to
reach validation and the store, and read ids that exist.
(schemathesis's ``from_fixture`` pytest loader does not run on pytest 9, hence plain tests.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error

from blade_pipeline_tests.integration.catalog_fixtures import CATALOG_TOKEN, catalog_service
from blade_pipeline_tests.servers import ServerProcess

AUTH = {"Authorization": f"Bearer {CATALOG_TOKEN}"}
MAX_EXAMPLES = 50
OPERATIONS = [
    ("POST", "/api/v1/items"), ("POST", "/api/v1/items/batch"),
    ("POST", "/api/v1/items/lookup"), ("GET", "/api/v1/items/{item_id}"),
    ("HEAD", "/api/v1/items/{item_id}"), ("GET", "/api/v1/items"), ("GET", "/api/v1/stats"),
    ("GET", "/healthz"),
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
JSON_OBJECTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
TEXT_OR_ANY = st.text(max_size=40) | JSON_VALUES
ITEMS = st.fixed_dictionaries(
    {"item_id": st.text(min_size=1, max_size=24) | JSON_VALUES, "data": JSON_OBJECTS | JSON_VALUES},
    optional={"data_type": st.just("maintenance") | TEXT_OR_ANY, "classification": TEXT_OR_ANY,
              "content_hash": TEXT_OR_ANY, "metadata": JSON_OBJECTS | JSON_VALUES,
              "last_modified": st.datetimes().map(datetime.isoformat) | TEXT_OR_ANY})
ITEM_TEXT = ITEMS.map(lambda item: json.dumps(item, ensure_ascii=False))
NDJSON = st.lists(ITEM_TEXT | st.text(max_size=30), min_size=1, max_size=8).map(
    lambda lines: "\n".join(lines).encode())
#: Multipart parts that replace schemathesis's random ones (each drawn or not), so that
#: positive cases get past JSON decoding into validation and the store.
FORM_PARTS = {
    "/api/v1/items": st.fixed_dictionaries({}, optional={
        "file": ITEM_TEXT.map(str.encode), "metadata": JSON_OBJECTS.map(json.dumps),
        "timestamp": st.datetimes().map(datetime.isoformat)}),
    "/api/v1/items/batch": st.fixed_dictionaries({}, optional={"file": NDJSON}),
}
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
                         database=None, suppress_health_check=list(HealthCheck))


def error_has_json_reason(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every 4xx/5xx (except to HEAD, which has no body) is ``{"error", "reason", ...}``."""
    if response.status_code < 400 or case.method.upper() == "HEAD":
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), \
        f"HTTP {response.status_code} error is {content_type!r}, not JSON"
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("reason"), str) and body["reason"], \
        f"HTTP {response.status_code} error has no reason: {response.content[:200]!r}"


CHECKS = [not_a_server_error, error_has_json_reason]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with catalog_service(tmp_path_factory.mktemp("fuzz")) as srv:
        yield srv


@pytest.fixture(scope="module")
def catalog_schema(server: ServerProcess) -> schemathesis.BaseSchema:
    """The spec as the running service serves it."""
    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    schema.config.update(base_url=server.base_url)
    return schema


def test_every_operation_is_fuzzed(catalog_schema: schemathesis.BaseSchema) -> None:
    served = {(result.ok().method.upper(), result.ok().path)
              for result in catalog_schema.get_all_operations()}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), [
    pytest.param(method, path, mode, id=f"{mode.value} {method} {path}")
    for method, path in OPERATIONS for mode in GenerationMode
    if path != "/healthz" or mode is GenerationMode.POSITIVE  # healthz has no input to break
])
def test_fuzz_operation(catalog_schema: schemathesis.BaseSchema, method: str, path: str,
                        mode: GenerationMode) -> None:
    operation = catalog_schema[path][method]
    positive = mode is GenerationMode.POSITIVE
    parts = FORM_PARTS.get(path, st.just({})) if positive else st.just({})
    known = [row["item_id"] for row in httpx.get(
        f"{catalog_schema.config.base_url}/api/v1/items", headers=AUTH).json()["items"]]
    item_ids = (st.none() | st.sampled_from(known)) if positive and known else st.none()
    sent: list[int] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(mode), form=parts, item_id=item_ids)
    def fuzz(case: Case, form: dict[str, str | bytes], item_id: str | None) -> None:
        if form and isinstance(case.body, dict):
            case.body.update(form)
        if item_id is not None and "item_id" in case.path_parameters:
            case.path_parameters["item_id"] = item_id
        response = case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=30)
        sent.append(response.status_code)

    fuzz()
    assert sent, "no request was sent"
    if positive:  # the cases got past validation, not only bounced off it
        assert any(200 <= status < 300 for status in sent), sorted(set(sent))


def test_service_survived_fuzzing(server: ServerProcess) -> None:
    """Runs last in this module: the process is up and logged no unhandled error."""
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    log = server.log_text()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
