"""Reports, after the run, the longest pauses of the pytest process itself, and in which test.

Tests that watch something happen "while" a probe runs fail when this process is not running
for seconds (a busy CI host, a long garbage collection holding the GIL). A ticker thread that
wakes every 100 ms measures how late it woke; the garbage collector's own callbacks time each
collection. The summary line says which it was, so a timing failure can be read against it.
"""
import gc
import threading
import time

TICK = 0.1
_worst = {"late": (0.0, None), "gc": (0.0, None, None)}
_current = {"test": None}
_gc_started = {}


def _ticker():
    while True:
        before = time.monotonic()
        time.sleep(TICK)
        late = time.monotonic() - before - TICK
        if late > _worst["late"][0]:
            _worst["late"] = (late, _current["test"])


def _on_gc(phase, info):
    if phase == "start":
        _gc_started["at"] = time.perf_counter()
        return
    took = time.perf_counter() - _gc_started.pop("at", time.perf_counter())
    if took > _worst["gc"][0]:
        _worst["gc"] = (took, info.get("generation"), _current["test"])


def pytest_sessionstart(session):
    gc.callbacks.append(_on_gc)
    threading.Thread(target=_ticker, name="pause-ticker", daemon=True).start()


def pytest_runtest_logstart(nodeid, location):
    _current["test"] = nodeid


def pytest_terminal_summary(terminalreporter):
    late, late_test = _worst["late"]
    took, generation, gc_test = _worst["gc"]
    terminalreporter.write_sep(
        "-", f"pauses of this process: a {TICK * 1000:.0f} ms ticker woke at worst {late * 1000:.0f} ms late "
             f"({late_test}); longest garbage collection {took * 1000:.0f} ms (generation {generation}, {gc_test})")
