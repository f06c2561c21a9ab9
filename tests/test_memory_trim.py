"""Issue 8 item 25: freed heap memory goes back to the OS (app.services.memory_trim)."""
import threading

import psutil
import pytest

from app.services import memory_trim

BLOB = 2048  # above pymalloc's 512-byte limit: served by glibc malloc, as the request path's buffers are


def test_trim_returns_freed_heap_pages_that_malloc_keeps():
    if memory_trim._malloc_trim is None:
        pytest.skip("not glibc: no malloc_trim")
    process = psutil.Process()
    kept = []

    def churn():
        # Like a burst of requests on a worker thread: many blocks, nearly all freed, a few kept
        # alive here and there, which stops the heap from simply shrinking at its top.
        blobs = [bytes(BLOB) for _ in range(40_000)]
        kept.extend(blobs[::1000])
        del blobs

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = process.memory_info().rss
    assert memory_trim.trim() is True
    after = process.memory_info().rss
    assert before - after > 30 * 2**20, f"RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB"
