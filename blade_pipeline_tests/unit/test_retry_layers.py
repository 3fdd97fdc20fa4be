"""The one-retry-layer rule: the step retries only what no resource retried."""

import pytest

from blade_pipeline.defs.failures import step_failure, step_may_retry
from blade_pipeline.sources.reader import (
    SourceAuthError,
    SourceQueryError,
    SourceResultLostError,
    SourceUnavailableError,
)
from blade_pipeline.storage.catalog import CatalogAuthError, CatalogError, CatalogUnavailableError
from blade_pipeline.storage.lake import LakeError

URL = "http://catalog.test/api/v1/items/batch"


@pytest.mark.parametrize(("exc", "retried_by_step"), [
    (CatalogUnavailableError("503 x3", url=URL), False),  # the client retried each request
    (CatalogAuthError("401", url=URL), False),
    (CatalogError("422", url=URL), False),
    (SourceUnavailableError("refused x3"), False),  # the connector retried the call
    (SourceAuthError("403"), False),
    (SourceQueryError("bad SQL"), False),
    (LakeError("disk full"), False),
    (SourceResultLostError("stream broke mid-fetch"), True),  # only a re-run recovers it
    (RuntimeError("unexpected"), True),
])
def test_the_step_retries_only_what_no_resource_retried(exc, retried_by_step):
    assert step_may_retry(exc) is retried_by_step
    failure = step_failure("supply", exc)
    assert failure.allow_retries is retried_by_step
    assert failure.description.startswith("[supply] ")
