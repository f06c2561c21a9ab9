"""Give the heap memory a worker has freed back to the OS (glibc ``malloc_trim``).

Measured (docs/benchmarks.md, "Worker memory"): under mixed load with 256 threads a worker's
Python heap and SQLite's memory stay flat, but glibc keeps the pages freed by many threads'
arenas, so RSS creeps up and never comes back; ``malloc_trim(0)`` returns them.
"""
import ctypes


def _find_malloc_trim():
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)  # None: not glibc (e.g. musl)
    except OSError:
        return None


_malloc_trim = _find_malloc_trim()


def trim():
    """Return freed heap pages to the OS; False where the C library has no malloc_trim."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
