"""The central worker's entry: store results and "started" notices from agents; `python -m app.worker`.

Runs inside a Flask app context (the database, the job store); the same per-process sweep as
the API's workers ends overdue jobs as `timeout` (app.services.job_sweeper).
"""
import logging
import os
from datetime import UTC, datetime

from app.agent import protocol
from app.agent.celery_app import make_celery
from app.utils.cpu_priority import lower_cpu_priority
from app.utils.group_commit import GroupWriter
from app.worker.notify import ResultNotifier

log = logging.getLogger("probeops.worker")

STORE_RETRY_SECONDS = 1.0   # a database that is away: the result is stored again after this...
STORE_MAX_RETRIES = 120     # ...this many times (past every job's deadline: then it is a timeout)


def build(flask_app):
    """The central worker's Celery app: `probeops.store_reports` (and, for older agents,
    `probeops.store_result` and `probeops.mark_started`), written in batches (app.utils.group_commit)."""
    from app.services import job_store

    config = flask_app.config
    celery = make_celery("probeops-central", config["CELERY_BROKER_URL"],
                         concurrency=config["CENTRAL_WORKER_CONCURRENCY"])
    notifier = ResultNotifier(config["CELERY_BROKER_URL"])

    def write_batch(reports):
        with flask_app.app_context():
            return job_store.store_many(reports)

    def published(reports, _written):
        ended = [r["job_id"] for r in reports if r.get("outcome") is not None]
        if ended:
            notifier.stored(*ended)

    writer = GroupWriter(write_batch, after=published, is_transient=job_store.is_transient, max_batch=256,
                         name="probeops-store")

    def write(task, reports):
        try:
            return writer.write(reports)
        except Exception as exc:
            if job_store.is_transient(exc):
                raise task.retry(countdown=STORE_RETRY_SECONDS, max_retries=STORE_MAX_RETRIES) from exc
            raise

    def started(epoch):
        return datetime.fromtimestamp(float(epoch), UTC) if epoch is not None else None

    @celery.task(name=protocol.STORE_REPORTS, bind=True, acks_late=True)
    def store_reports(self, location, reports):
        """An agent's reports, coalesced: results (with when they started) and "started" notices
        (queued -> running). Acknowledged once all are written; written again, they change nothing."""
        write(self, [{"job_id": int(r["job_id"]), "outcome": r.get("outcome"), "location": location,
                      "started_at": started(r.get("started"))} for r in reports])

    @celery.task(name=protocol.STORE_RESULT, bind=True, acks_late=True)
    def store_result(self, job_id, outcome, location, started_epoch=None):
        """One result (agents before store_reports): as a report of its own."""
        write(self, [{"job_id": job_id, "outcome": outcome, "location": location,
                      "started_at": started(started_epoch)}])

    @celery.task(name=protocol.MARK_STARTED, bind=True, acks_late=True)
    def mark_started(self, job_id, started_epoch, location):
        """queued -> running (agents before store_reports)."""
        write(self, [{"job_id": job_id, "outcome": None, "location": location,
                      "started_at": started(started_epoch)}])

    return celery


def serve_metrics(config):
    """Serve this process's metrics (the results it stores: ``probeops_probes_total`` by type,
    outcome and location) on WORKER_METRICS_PORT; a port already taken is logged, not fatal."""
    port = config["WORKER_METRICS_PORT"]
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

    from app import metrics

    registry = REGISTRY
    if metrics.multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, addr=config["WORKER_METRICS_BIND"], registry=registry)
    except OSError as exc:
        log.warning("worker metrics not served on %s:%s: %s", config["WORKER_METRICS_BIND"], port, exc)
    else:
        log.info("worker metrics on http://%s:%s/metrics", config["WORKER_METRICS_BIND"], port)


def main():
    """Build the Flask app from the environment, start the sweep, consume `probeops.central`."""
    from app import create_app
    from app.services import job_sweeper

    flask_app = create_app()  # configures logging (LOG_FORMAT) like the API's
    if not flask_app.config.get("CELERY_BROKER_URL"):
        raise SystemExit("[worker] CELERY_BROKER_URL is required")
    try:
        lower_cpu_priority(flask_app.config["WORKER_NICE"])
    except ValueError as exc:
        raise SystemExit(f"[worker] WORKER_NICE: {exc}") from None
    celery = build(flask_app)
    job_sweeper.ensure_started(flask_app)
    serve_metrics(flask_app.config)
    concurrency = str(flask_app.config["CENTRAL_WORKER_CONCURRENCY"])
    celery.worker_main(["worker", "-Q", protocol.CENTRAL_QUEUE, "-P", "threads", "-c", concurrency,
                        "-n", "central@%h", "-l", os.environ.get("LOG_LEVEL", "info").upper(),
                        "--without-gossip", "--without-mingle", "--without-heartbeat"])
