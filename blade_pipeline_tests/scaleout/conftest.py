"""The scale-out tier shares the fault suite's warehouse rows and their in-process reference."""

from blade_pipeline_tests.faults.conftest import reference_db  # noqa: F401 (a fixture)
