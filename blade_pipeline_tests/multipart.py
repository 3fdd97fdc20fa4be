"""Raw multipart/form-data bodies for tests that send hand-made requests to the catalog."""

from __future__ import annotations

from collections.abc import Mapping

import httpx


def encode_multipart(fields: Mapping[str, str], file: tuple[str, bytes, str]
                     ) -> tuple[bytes, str]:
    """(body, Content-Type) of text ``fields`` and one part ``file`` = (filename, content,
    content type), encoded by httpx exactly as the catalog client sends it."""
    request = httpx.Request("POST", "http://catalog.invalid/", data=dict(fields),
                            files={"file": file})
    return request.read(), request.headers["content-type"]
