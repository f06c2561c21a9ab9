"""Group commit for the central worker: the reports its task threads hold are written together.

Every task thread (``CENTRAL_WORKER_CONCURRENCY`` of them, one message each) hands its report to
one writer thread and waits; the writer takes everything waiting and writes it in ONE transaction
(``job_store.store_many``), then publishes the stored job ids in one notice. While it writes, the
next reports gather, so under load a transaction carries up to a thread per report, and alone a
report is written at once (no timer, no added latency).

Each task still acknowledges its own message only after its report is written (``acks_late``):
a batch that fails on a database that is away fails every task in it, and each retries as before;
any other failure is retried report by report, so one bad report never holds back the others.
"""
import logging
import queue
import threading

log = logging.getLogger("probeops.worker")

MAX_BATCH = 256


class _Slot:
    __slots__ = ("report", "done", "written", "error")

    def __init__(self, report):
        self.report = report
        self.done = threading.Event()
        self.written = False
        self.error = None


class GroupWriter:
    """``write(report)`` from any thread: True/False (written) once it is committed, or raises."""

    def __init__(self, write_batch, published=None, is_transient=lambda exc: False):
        self._write_batch = write_batch      # list of reports -> list of bools, one transaction
        self._published = published          # list of job ids whose results were stored
        self._is_transient = is_transient
        self._queue = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread = None

    def write(self, report):
        slot = _Slot(report)
        self._ensure_thread()
        self._queue.put(slot)
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.written

    def _ensure_thread(self):
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="probeops-group-writer", daemon=True)
                self._thread.start()

    def _run(self):
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a task waiting for ever
                for slot in batch:
                    if not slot.done.is_set():
                        slot.error = exc
                        slot.done.set()

    def _write(self, batch):
        try:
            results = self._write_batch([slot.report for slot in batch])
        except Exception as exc:  # noqa: BLE001 - judged below
            if self._is_transient(exc) or len(batch) == 1:
                for slot in batch:
                    slot.error = exc
                    slot.done.set()
                return
            log.warning("a batch of %d reports failed (%s): writing them one by one", len(batch), type(exc).__name__)
            for slot in batch:
                self._write([slot])
            return
        stored = [slot.report["job_id"] for slot in batch if slot.report.get("outcome") is not None]
        if stored and self._published is not None:
            self._published(stored)
        for slot, ok in zip(batch, results, strict=True):
            slot.written = ok
            slot.done.set()
