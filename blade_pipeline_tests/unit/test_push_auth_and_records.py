"""Push ingestion's pure parts: token verification and a batch body's records."""

from __future__ import annotations

import datetime as dt
import decimal
import io

import jwt
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from blade_pipeline.config.sources import BladeSource, PushEndpoint
from blade_pipeline.push.auth import AuthError, TokenVerifier, mint_token
from blade_pipeline.push.records import (
    BadBatch,
    from_log_payload,
    parse_arrow,
    parse_ndjson,
    to_log_payload,
)

SECRET, AUD = "unit-test-secret-of-at-least-32-bytes", "blade-ingest"
ENDPOINT = PushEndpoint(table="sortie_events",
                        columns={"event_id": "string", "tail_number": "string",
                                 "flight_hours": "decimal(6,2)", "legs": "int",
                                 "flown_on": "date", "last_modified": "timestamp"})


def _verify(token: str | None, verifier: TokenVerifier | None = None):
    verifier = verifier or TokenVerifier(AUD, secret=SECRET)
    return verifier.verify(None if token is None else f"Bearer {token}")


def test_a_valid_token_names_its_tenant_and_endpoints():
    principal = _verify(mint_token(SECRET, "acme", ["sortie_events"], AUD))
    assert principal.tenant == "acme" and principal.endpoints == {"sortie_events"}
    principal.require("sortie_events")
    with pytest.raises(AuthError) as refused:
        principal.require("other_source")
    assert refused.value.status == 403 and "acme" in refused.value.reason
    _verify(mint_token(SECRET, "acme", "*", AUD)).require("anything")


@pytest.mark.parametrize(("token", "says"), [
    (None, "missing bearer token"),
    (mint_token("another-secret-of-at-least-32-bytes!", "acme", "*", AUD), "InvalidSignatureError"),
    (mint_token(SECRET, "acme", "*", AUD, dt.timedelta(seconds=-5)), "expired"),
    (mint_token(SECRET, "acme", "*", "someone-else"), "audience"),
    (jwt.encode({"endpoints": "*", "aud": AUD, "exp": dt.datetime.now(dt.UTC)
                 + dt.timedelta(minutes=5)}, SECRET, algorithm="HS256"), "'tenant' claim"),
    (jwt.encode({"tenant": "a.b", "endpoints": "*", "aud": AUD, "exp": dt.datetime.now(dt.UTC)
                 + dt.timedelta(minutes=5)}, SECRET, algorithm="HS256"), "tenant must be"),
    (jwt.encode({"tenant": "acme", "endpoints": "*", "aud": AUD}, SECRET, algorithm="HS256"),
     "'exp' claim"),
    ("not-a-jwt", "DecodeError"),
], ids=["missing", "forged", "expired", "audience", "no-tenant", "bad-tenant", "no-exp",
        "garbage"])
def test_a_bad_token_is_a_401_saying_why_without_the_token(token, says):
    with pytest.raises(AuthError) as refused:
        _verify(token)
    assert refused.value.status == 401 and says in refused.value.reason
    assert token is None or token not in refused.value.reason


def test_a_token_signed_with_none_is_refused():
    token = jwt.encode({"tenant": "acme", "endpoints": "*", "aud": AUD,
                        "exp": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)},
                       None, algorithm="none")
    with pytest.raises(AuthError):
        _verify(token)


NDJSON_OK = (b'{"event_id": "E1", "tail_number": "AF-1", "flight_hours": 2.5, "legs": 2, '
             b'"flown_on": "2026-12-01", "last_modified": "2026-12-01T10:00:00Z"}\n'
             b'{"event_id": "E2", "tail_number": null, "flight_hours": "1.25", "legs": 1, '
             b'"flown_on": "2026-12-02", "last_modified": "2026-12-02 11:30:00"}\n')


def test_ndjson_records_take_the_declared_types():
    table = parse_ndjson(NDJSON_OK, ENDPOINT)
    assert table.schema == ENDPOINT.arrow_schema()
    rows = table.to_pylist()
    assert rows[0]["flight_hours"] == decimal.Decimal("2.50")
    assert rows[1]["flown_on"] == dt.date(2026, 12, 2) and rows[1]["tail_number"] is None
    assert rows[1]["last_modified"] == dt.datetime(2026, 12, 2, 11, 30, tzinfo=dt.UTC)
    assert from_log_payload(to_log_payload(table)).equals(table)


@pytest.mark.parametrize(("body", "says"), [
    (NDJSON_OK + b'{"event_id": "E3", "legs": "three"}\n', "line 3: field 'legs'"),
    (NDJSON_OK + b'{"event_id": "E3", "pilot": "x"}\n', "line 3: field 'pilot' is not a column"),
    (b'{"event_id": "E1"}\n{"event_id": \n', "line 2: not JSON"),
    (b'["E1"]\n', "line 1: not a JSON object"),
    (b'{"event_id": "E1", "flown_on": "yesterday"}\n', "line 1: field 'flown_on'"),
    (b"  \n", "empty body"),
], ids=["wrong-type", "unknown-field", "broken-json", "not-an-object", "bad-date", "empty"])
def test_a_bad_ndjson_batch_is_refused_whole_naming_line_and_field(body, says):
    with pytest.raises(BadBatch, match=says.replace("(", r"\(")):
        parse_ndjson(body, ENDPOINT)


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def test_arrow_records_are_cast_to_the_declared_types():
    sent = pa.table({"event_id": ["E1"], "legs": pa.array([3], pa.int32()),
                     "last_modified": pa.array([dt.datetime(2026, 12, 1)], pa.timestamp("ms"))})
    table = parse_arrow(_arrow(sent), ENDPOINT)
    assert table.schema == ENDPOINT.arrow_schema()
    assert table.column("legs").to_pylist() == [3]
    assert table.column("flight_hours").null_count == 1


@pytest.mark.parametrize(("body", "says"), [
    (_arrow(pa.table({"event_id": ["E1"], "pilot": ["x"]})), "field 'pilot' is not a column"),
    (_arrow(pa.table({"event_id": ["E1", "E2"], "legs": ["1", "two"]})),
     "record 2: field 'legs'"),
    (b"this is not arrow", "not an Arrow IPC stream"),
], ids=["unknown-field", "uncastable", "garbage"])
def test_a_bad_arrow_batch_is_refused_whole_naming_record_and_field(body, says):
    with pytest.raises(BadBatch, match=says):
        parse_arrow(body, ENDPOINT)


def _push_source(**columns: str) -> dict:
    return {"name": "sortie_events", "display_name": "Sortie events", "data_type": "sortie",
            "kind": "push", "push": {"columns": columns}, "primary_key": "event_id",
            "item_id_prefix": "SEV", "partition_start": "2026-01-01"}


def test_a_push_source_declares_its_key_and_a_timestamp_watermark():
    source = BladeSource.model_validate(_push_source(event_id="string",
                                                     last_modified="timestamp"))
    assert source.table_label == "push:sortie_events"
    with pytest.raises(ValueError, match="must declare the primary_key 'event_id'"):
        BladeSource.model_validate(_push_source(last_modified="timestamp"))
    with pytest.raises(ValueError, match="watermark 'last_modified' must be a timestamp"):
        BladeSource.model_validate(_push_source(event_id="string", last_modified="date"))
    with pytest.raises(ValueError, match="column 'x': 'blob' is not a CSV column type"):
        BladeSource.model_validate(_push_source(event_id="string", last_modified="timestamp",
                                                x="blob"))




def test_a_pushed_rows_tenant_goes_into_its_item_metadata_not_its_data_or_hash():
    import json

    from blade_pipeline.steps.items import IngestRun, ItemBuilder

    source = BladeSource.model_validate(_push_source(event_id="string", hours="float",
                                                     last_modified="timestamp"))
    rows = pa.table({"event_id": ["E1", "E2"], "hours": [1.5, 2.0],
                     "last_modified": pa.array([dt.datetime(2026, 12, 1)] * 2,
                                               pa.timestamp("us"))})
    builder = ItemBuilder(source, IngestRun.now("run-1"))
    plain = builder.build(rows)
    tenanted = builder.build(rows.append_column("_tenant", pa.array(["acme", "glo\"bex"])))
    assert tenanted.column("data").equals(plain.column("data"))
    assert tenanted.column("content_hash").equals(plain.column("content_hash"))
    metadata = [json.loads(m) for m in tenanted.column("metadata").to_pylist()]
    assert [m["tenant"] for m in metadata] == ["acme", "glo\"bex"]
    assert metadata[0]["source"] == "push" and metadata[0]["table"] == "sortie_events"
    assert "tenant" not in json.loads(plain.column("metadata")[0].as_py())


def test_the_code_location_builds_a_push_source_with_its_drained_sensor(monkeypatch):
    from blade_pipeline import definitions
    from blade_pipeline.defs import resources

    push = BladeSource.model_validate(_push_source(event_id="string", last_modified="timestamp"))
    monkeypatch.setattr(definitions, "default_sources", lambda: (push,))
    monkeypatch.setattr(resources, "default_sources", lambda: (push,))
    defs = definitions.build_definitions()
    assert defs.get_sensor_def("blade_sortie_drained") is not None
    assert type(defs.resources["pushed"]).__name__ == "PushedRows"
    assert {k.to_user_string() for k in defs.resolve_all_asset_keys()} >= {
        "blade/sortie/staged", "blade/sortie/catalog"}


def test_the_drained_sensor_runs_committed_days_and_says_when_the_log_does_not_answer(
        tmp_path, monkeypatch):
    """The committed days as one range run; the drain's lag, asked from a log that does not
    answer, is "unknown" in the skip reason and recorded as no observation."""
    from blade_pipeline.defs import push_sensor
    from blade_pipeline.defs.partitions import daily_partitions
    from blade_pipeline.sources.pushed_rows import Committed, PushedRows
    from blade_pipeline.storage.lake import ParquetLake

    source = BladeSource.model_validate(_push_source(event_id="string",
                                                     last_modified="timestamp"))
    pushed = PushedRows(lake=ParquetLake(uri=str(tmp_path)))
    pushed.commit(source.name, Committed(2, {"2026-11-20": 1, "2026-11-21": 2}, 7))
    monkeypatch.setenv("BLADE_NATS_URL", "nats://127.0.0.1:1")  # nothing listens there
    lag = push_sensor._lag(source)
    assert lag is None
    partitions = daily_partitions(source)
    first = push_sensor.evaluate_drained(source, pushed, None, partitions, lag)
    [request] = first.run_requests
    assert (request.tags["dagster/asset_partition_range_start"],
            request.tags["dagster/asset_partition_range_end"]) == ("2026-11-20", "2026-11-21")
    assert not first.asset_events
    second = push_sensor.evaluate_drained(source, pushed, first.cursor, partitions, lag)
    assert not second.run_requests
    assert "log lag unknown" in second.skip_reason.skip_message
    pushed.commit(source.name, Committed(3, {"2026-11-20": 3, "2026-11-21": 2}, 9))
    [late] = push_sensor.evaluate_drained(source, pushed, second.cursor, partitions,
                                          lag).run_requests  # a batch delivered again
    assert late.partition_key == "2026-11-20"
