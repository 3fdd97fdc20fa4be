# ruff: noqa: E501  (pinned byte strings and their rows are kept on one line each, to compare)
"""The canonical form of an item's ``data`` and its ``content_hash`` (hash_version 1), pinned.

These are the bytes the retired C kernel and DuckDB's ``to_json`` both wrote (checked equal when
the kernel was retired): a change here re-hashes, and so re-uploads, every item. If a DuckDB
upgrade fails this test, either keep the old form or bump ``items.HASH_VERSION`` on purpose and
say so in the README (see the module doc of ``blade_pipeline/steps/items.py``)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json

import pyarrow as pa
import pytest

from blade_pipeline.config.sources import source_for
from blade_pipeline.steps.items import HASH_VERSION, IngestRun, ItemBuilder

RUN = IngestRun("run-golden", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
ts = pa.timestamp("us")

ROWS = {
 "maintenance": pa.record_batch({
   "record_id": ["000000001", "000000002"], "tail_number": ["12-3456", "98-7654"],
   "aircraft_type": ["F-16C", None], "maint_type": ["SCHEDULED", "TCTO"],
   "description": ['Hydraulic "leak" \\ line\nsecond é ✈', "\u0001ctl\ttab"],
   "due_date": pa.array([dt.date(2026, 7, 1), None], pa.date32()),
   "priority": ["HIGH", "LOW"], "status": ["OPEN", "COMPLETED"],
   "labor_hours": pa.array([1.5, 0.1], pa.float64()), "base": ["Hill AFB", None],
   "classification": ["UNCLASS", None],
   "last_modified": pa.array([dt.datetime(2026, 6, 29, 15, 48, 25, 267150), dt.datetime(2026, 6, 29, 0, 0)], ts)}),
 "sortie": pa.record_batch({
   "sortie_id": ["100000001", "100000002"], "tail_number": ["12-3456", "98-7654"],
   "aircraft_type": ["C-17A", "KC-46A"], "mission_type": ["TRAINING", "REFUEL"],
   "takeoff_time": pa.array([dt.datetime(2026, 6, 29, 8, 0, 0, 5), None], ts),
   "landing_time": pa.array([dt.datetime(2026, 6, 29, 11, 30), None], ts),
   "flight_hours": pa.array([3.5, 1e-7], pa.float64()), "base": [None, "Dover AFB"],
   "status": ["COMPLETED", "SCHEDULED"], "classification": ["CUI", "UNCLASS"],
   "last_modified": pa.array([dt.datetime(2026, 6, 29, 12, 0, 0, 100000), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)], ts)}),
 "supply": pa.record_batch({
   "part_number": ["1560-01-234-5678", "2840-00-111-2222"], "nomenclature": ["BLADE, FAN", "SEAL"],
   "quantity_on_hand": pa.array([12, 0], pa.int32()), "reorder_point": pa.array([None, 5], pa.int32()),
   "unit_cost": pa.array([decimal.Decimal("10.03"), decimal.Decimal("1234567890.50")], pa.decimal128(12, 2)),
   "location": ["W1-A", None], "condition_code": ["A", "H"], "classification": ["UNCLASS", "UNCLASS"],
   "last_modified": pa.array([dt.datetime(2026, 6, 1, 1, 2, 3), dt.datetime(2026, 6, 2, 4, 5, 6, 700000)], ts)}),
 "readiness": pa.record_batch({
   "report_id": ["200000001", "200000002"], "tail_number": ["12-3456", "98-7654"],
   "aircraft_type": ["B-52H", None], "report_date": pa.array([dt.date(2026, 6, 28), dt.date(2026, 6, 29)], pa.date32()),
   "status": ["FMC", "NMC"], "reason": [None, "awaiting parts: \"NSN 1560\""], "base": ["Minot AFB", "Barksdale AFB"],
   "classification": ["UNCLASS", "CUI"],
   "last_modified": pa.array([dt.datetime(2026, 6, 29, 6, 0), dt.datetime(2026, 6, 29, 7, 15, 0, 10)], ts)}),
}

#: data_type -> [(data, content_hash)] of ROWS (hash_version 1)
PINNED = {
    'maintenance': [
        ('{"aircraft_type":"F-16C","base":"Hill AFB","classification":"UNCLASS","description":"Hydraulic \\"leak\\" \\\\ line\\nsecond é ✈","due_date":"2026-07-01","labor_hours":1.5,"last_modified":"2026-06-29 15:48:25.26715","maint_type":"SCHEDULED","priority":"HIGH","record_id":"000000001","status":"OPEN","tail_number":"12-3456"}',
         '7998066c5344322cee37e56d7ad64a0476213b4c322b28c22fd631dd12119b30'),
        ('{"aircraft_type":null,"base":null,"classification":null,"description":"\\u0001ctl\\ttab","due_date":null,"labor_hours":0.1,"last_modified":"2026-06-29 00:00:00","maint_type":"TCTO","priority":"LOW","record_id":"000000002","status":"COMPLETED","tail_number":"98-7654"}',
         '6ffc334c806b6152063e61039fe93a9fd4f40263e8f74dfba0e60d65b71357f2'),
    ],
    'sortie': [
        ('{"aircraft_type":"C-17A","base":null,"classification":"CUI","flight_hours":3.5,"landing_time":"2026-06-29 11:30:00","last_modified":"2026-06-29 12:00:00.1","mission_type":"TRAINING","sortie_id":"100000001","status":"COMPLETED","tail_number":"12-3456","takeoff_time":"2026-06-29 08:00:00.000005"}',
         'e4a328582110563021419ef9e73a1119bb306e2e40a3af9772aaca5b1a4aa60c'),
        ('{"aircraft_type":"KC-46A","base":"Dover AFB","classification":"UNCLASS","flight_hours":1e-7,"landing_time":null,"last_modified":"1999-12-31 23:59:59.999999","mission_type":"REFUEL","sortie_id":"100000002","status":"SCHEDULED","tail_number":"98-7654","takeoff_time":null}',
         '0fa09d32b94aa12121bef3b83b67b08e47769242e4ba61f1cc6a155c1699ffc9'),
    ],
    'supply': [
        ('{"classification":"UNCLASS","condition_code":"A","last_modified":"2026-06-01 01:02:03","location":"W1-A","nomenclature":"BLADE, FAN","part_number":"1560-01-234-5678","quantity_on_hand":12,"reorder_point":null,"unit_cost":10.03}',
         '5be3b4e3979a7bdebae6db34adcadd25c5aee2f9eb2ef36d320f305ad9cbcc23'),
        ('{"classification":"UNCLASS","condition_code":"H","last_modified":"2026-06-02 04:05:06.7","location":null,"nomenclature":"SEAL","part_number":"2840-00-111-2222","quantity_on_hand":0,"reorder_point":5,"unit_cost":1234567890.5}',
         '662d2d82b3a25ca0a36269762a1c2ec632c2e20eec152a86271ebb0ec73ec20a'),
    ],
    'readiness': [
        ('{"aircraft_type":"B-52H","base":"Minot AFB","classification":"UNCLASS","last_modified":"2026-06-29 06:00:00","reason":null,"report_date":"2026-06-28","report_id":"200000001","status":"FMC","tail_number":"12-3456"}',
         'bce6651901af71bbcbb8dca06440b4bb717e96a24da8845cd8ac3031e67d16ec'),
        ('{"aircraft_type":null,"base":"Barksdale AFB","classification":"CUI","last_modified":"2026-06-29 07:15:00.00001","reason":"awaiting parts: \\"NSN 1560\\"","report_date":"2026-06-29","report_id":"200000002","status":"NMC","tail_number":"98-7654"}',
         'ab9f87e999448ccd9a347dc6a236da4c5bea40233f765cacc886e7539e1b541b'),
    ],
}

DOUBLES = [0.0, -0.0, 1.0, -2.5, 0.1, 1 / 3, 100.0, 12345.678, 1e-4, 1e-5, 1e-6, 1.5e-6,
           9.99e-7, 1e-7, 1e15, 1e16, 1e20, 9.99e20, 1e21, 1.5e20, 2.0**53, 2.0**60,
           123456789012345678.0, 5e-324, 1.7976931348623157e308, 0.30000000000000004,
           4.35, 0.07, 1234.5678, 9007199254740991.0]
DOUBLES_WRITTEN = [
    "0.0", "-0.0", "1.0", "-2.5", "0.1", "0.3333333333333333", "100.0", "12345.678", "0.0001",
    "0.00001", "0.000001", "0.0000015", "9.99e-7", "1e-7", "1000000000000000.0",
    "10000000000000000.0", "100000000000000000000.0", "999000000000000000000.0", "1e21",
    "150000000000000000000.0", "9007199254740992.0", "1152921504606847000.0",
    "123456789012345680.0", "5e-324", "1.7976931348623157e308", "0.30000000000000004", "4.35",
    "0.07", "1234.5678", "9007199254740991.0"]


@pytest.mark.parametrize("data_type", sorted(PINNED))
def test_items_are_written_and_hashed_in_the_pinned_canonical_form(data_type):
    items = ItemBuilder(source_for(data_type), RUN).build(ROWS[data_type])
    assert list(zip(items.column("data").to_pylist(), items.column("content_hash").to_pylist(),
                    strict=True)) == PINNED[data_type]
    for text, digest in PINNED[data_type]:
        assert hashlib.sha256(text.encode()).hexdigest() == digest


def test_doubles_are_written_as_pinned():
    rows = ROWS["readiness"]
    batch = pa.record_batch({**{n: pa.array([rows.column(n)[0].as_py()] * len(DOUBLES),
                                            rows.schema.field(n).type)
                                for n in rows.schema.names},
                             "x_measure": pa.array(DOUBLES, pa.float64())})
    items = ItemBuilder(source_for("readiness"), RUN).build(batch)
    written = [json.loads(t, parse_float=str)["x_measure"] for t in
               items.column("data").to_pylist()]
    assert written == DOUBLES_WRITTEN


def test_every_item_says_which_canonical_form_its_hash_is_of():
    items = ItemBuilder(source_for("supply"), RUN).build(ROWS["supply"])
    assert {json.loads(m)["hash_version"] for m in items.column("metadata").to_pylist()} == {
        HASH_VERSION} == {1}
