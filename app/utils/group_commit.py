"""Group commit: what many threads hand in at the same moment goes out as ONE batch.

Used twice on the way of a result (no Flask here: the agent imports it):

- the agent: its probe threads' reports (results, "started" notices) leave as one
  ``probeops.store_reports`` message per batch instead of one message each;
- the central worker: the reports its task threads hold are written in one transaction
  (``job_store.store_many``) and announced in one notice.

One writer thread takes everything waiting and hands it to ``write_batch``; while it works, the
next items gather. Alone, an item goes out at once (no timer, no added latency); under load a
batch carries whatever arrived meanwhile. With ``min_interval`` (seconds, or a function giving
them at that moment), batches also leave at most that often: an item long after the last batch
still goes at once, but in a burst the items of the next moment travel together (fewer, larger
batches for the same work). ``write(items)`` returns once its items are written
(their results, in order) or raises what writing them raised, so a caller that acknowledges a
message afterwards (``acks_late``) still acknowledges only what is written. A batch that fails
transiently fails every caller in it (each retries as it would alone); any other failure is
retried caller by caller, so one bad item never holds back the others.
"""
import logging
import queue
import threading
import time

log = logging.getLogger("probeops")


class _Slot:
    __slots__ = ("items", "done", "results", "error")

    def __init__(self, items):
        self.items = items
        self.done = threading.Event()
        self.results = None
        self.error = None


class GroupWriter:
    """``write(items)`` from any thread; ``write_batch(items) -> results`` runs in one writer thread."""

    def __init__(self, write_batch, *, after=None, is_transient=lambda exc: False, max_batch=64,
                 min_interval=0.0, name="probeops-group-writer"):
        self._write_batch = write_batch   # list of items -> list of results (same length)
        self._after = after               # (items, results) after a successful batch (never raises)
        self._is_transient = is_transient
        self._max_batch = max_batch
        self._min_interval = min_interval  # seconds from one batch's start to the next one's
        self._name = name
        self._queue = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread = None

    def write(self, items, wait=True):
        """Write ``items`` (a list) with whatever else is waiting; their results, or raises.

        ``wait=False``: hand them in and return at once (a failure is only logged).
        """
        slot = _Slot(list(items))
        self._ensure_thread()
        self._queue.put(slot)
        if not wait:
            return None
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.results

    def _ensure_thread(self):
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self):
        last_start = float("-inf")
        while True:
            batch = [self._queue.get()]
            interval = self._min_interval() if callable(self._min_interval) else self._min_interval
            pause = last_start + interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # what arrives meanwhile joins this batch
            last_start = time.monotonic()
            size = len(batch[0].items)
            while size < self._max_batch:
                try:
                    slot = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(slot)
                size += len(slot.items)
            try:
                self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting for ever
                for slot in batch:
                    if not slot.done.is_set():
                        slot.error = exc
                        slot.done.set()

    def _write(self, batch):
        items = [item for slot in batch for item in slot.items]
        try:
            results = self._write_batch(items)
        except Exception as exc:  # noqa: BLE001 - judged below
            if self._is_transient(exc) or len(batch) == 1:  # each caller raises it (and retries)
                for slot in batch:
                    slot.error = exc
                    slot.done.set()
                return
            log.warning("%s: a batch of %d failed (%s): writing it again caller by caller", self._name,
                        len(items), type(exc).__name__)
            for slot in batch:
                self._write([slot])
            return
        if self._after is not None:
            try:
                self._after(items, results)
            except Exception:  # noqa: BLE001 - a notice is best effort
                log.exception("%s: after a batch", self._name)
        start = 0
        for slot in batch:
            slot.results = results[start:start + len(slot.items)]
            start += len(slot.items)
            slot.done.set()
