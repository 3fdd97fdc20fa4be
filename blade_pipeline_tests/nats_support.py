"""The machine's NATS JetStream (127.0.0.1:4222) for the push tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

NATS_URL = "nats://127.0.0.1:4222"
T = TypeVar("T")


def nats_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
        return True
    except OSError:
        return False


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end in a thread of its own (a test's thread may already run an
    event loop: another module's browser session on the same worker)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
