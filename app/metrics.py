"""Prometheus metrics: counted where things happen, added up over every Gunicorn worker at scrape.

Multiprocess mode (prometheus_client's): with PROMETHEUS_MULTIPROC_DIR set (start.sh sets it
before Gunicorn starts) each process writes its values to files of its own in that directory and
``GET /metrics`` adds them up, so a scrape answered by any worker covers all of them, and a dead
or recycled worker's counts stay (its files do). Without it (tests, ``flask run``) the values are
this process's own. Gauges of what is in flight count live processes only (``livesum``);
Gunicorn's ``child_exit`` hook drops a dead worker's (``mark_process_dead``).

Two figures are read when scraped, not counted: the jobs waiting in the database (one bounded
count over the partial index of active jobs) and the last heartbeat of each location the
dispatcher knows. docs/operations.md, "Metrics", lists every series.
"""
import hmac
import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from flask import current_app, g, request
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger("probeops")
disable_created_metrics()  # no *_created series: multiprocess mode has none, so neither does a single process

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the classic text format every Prometheus reads
METRICS_ENDPOINT = "system.metrics_text"  # not counted as a request itself (docs/operations.md)
UNMATCHED_ROUTE = "unmatched"  # 404s: the raw path is the caller's, never a label
QUEUE_COUNT_CAP = 100_000  # the scrape counts at most this many active jobs
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REJECTION_KINDS = {"quota_exceeded": "quota", "concurrency_limit": "concurrency"}  # other 429s: rate_limit

REQUESTS = Counter("probeops_http_requests", "HTTP requests answered, by route template and status",
                   ["method", "route", "status"])
LATENCY = Histogram("probeops_http_request_duration_seconds",
                    "Time from the request's first hook to its answer, by route template and status",
                    ["method", "route", "status"], buckets=LATENCY_BUCKETS)
PROBES = Counter("probeops_probes", "Probe results stored, by type, outcome and location",
                 ["type", "outcome", "location"])
IN_FLIGHT = Gauge("probeops_probes_in_flight", "Probes running in this API's workers now", ["type"],
                  multiprocess_mode="livesum")
REJECTIONS = Counter("probeops_rejections", "Requests refused with 429, by kind (rate_limit, quota, concurrency)",
                     ["kind"])


def multiprocess_dir():
    """The directory the workers' values are written to, or None (single-process mode)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


# -- counting (one call where the event happens) ---------------------------------------------

def start_timer():
    """before_request: when this request started, for the latency histogram."""
    g.metrics_started = time.perf_counter()


def observe_request(response):
    """after_request: count the answer by route template (the URL rule, never the raw path) and status."""
    if request.endpoint == METRICS_ENDPOINT:
        return response
    try:
        route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
        labels = (request.method, route, str(response.status_code))
        REQUESTS.labels(*labels).inc()
        started = g.get("metrics_started")
        if started is not None:
            LATENCY.labels(*labels).observe(time.perf_counter() - started)
    except Exception:  # noqa: BLE001 - a metrics hiccup must never fail an answer
        log.warning("could not count a request in the metrics", exc_info=True)
    return response


def probe_ended(probe_type, outcome, location):
    """Count a probe result that ended its job: completed, failed, refused (target_refused) or timeout."""
    PROBES.labels(probe_type or "unknown", outcome, location or "unknown").inc()


def job_outcome(values):
    """The ``outcome`` label for the row values a result was stored with (job_store.outcome_values)."""
    return "refused" if values.get("error_code") == "target_refused" else values.get("status", "failed")


@contextmanager
def probe_in_flight(probe_type):
    """Count a probe as in flight in this process while the block runs."""
    gauge = IN_FLIGHT.labels(probe_type or "unknown")
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def rejected(status, code):
    """Count a 429 by kind: the limiter's and the login back-off's rate_limit, quota, concurrency."""
    if status == 429:
        REJECTIONS.labels(REJECTION_KINDS.get(code, "rate_limit")).inc()


# -- read at scrape time --------------------------------------------------------------------

class ScrapeTimeCollector:
    """Jobs waiting in the database and the locations' heartbeats, read when /metrics is asked."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        up = GaugeMetricFamily("probeops_metrics_source_up",
                               "1 when the scrape could read this source (database, locations)", labels=["source"])
        jobs = self._jobs()
        up.add_metric(["database"], 0 if jobs is None else 1)
        if jobs is not None:
            yield jobs
        locations = self._locations()
        up.add_metric(["locations"], 0 if locations is None else 1)
        if locations is not None:
            yield from locations
        yield up

    def _jobs(self):
        """``probeops_jobs{state}``: queued and running jobs (at most QUEUE_COUNT_CAP counted)."""
        from app.db.models import ProbeJob
        from app.extensions import db

        jobs = ProbeJob.__table__
        # status IN (...) is the partial index's own predicate (SQLite uses it only when repeated as is).
        active = sa.select(jobs.c.status).where(jobs.c.status.in_(("queued", "running"))).limit(QUEUE_COUNT_CAP)
        counted = active.subquery()
        query = sa.select(counted.c.status, sa.func.count()).group_by(counted.c.status)
        try:
            with db.engine.connect() as conn:
                counts = dict(conn.execute(query).all())
        except Exception as error:  # noqa: BLE001 - a scrape while the database is away still answers
            log.warning("metrics: could not count the jobs (%s)", type(error).__name__)
            return None
        family = GaugeMetricFamily("probeops_jobs", "Probe jobs not ended yet, by state (queued is the queue depth)",
                                   labels=["state"])
        for state in ("queued", "running"):
            family.add_metric([state], counts.get(state, 0))
        return family

    def _locations(self):
        """The last heartbeat of every location online now, and how many there are."""
        from app.services.dispatch import get_dispatcher

        try:
            found = get_dispatcher(self.app).locations()
        except Exception as error:  # noqa: BLE001 - a broker that is away: the scrape still answers
            log.warning("metrics: could not list the locations (%s)", type(error).__name__)
            return None
        last_seen = GaugeMetricFamily("probeops_location_last_seen_timestamp_seconds",
                                      "When each online location (agent) last sent its heartbeat", labels=["location"])
        for location in found:
            seen = _epoch(location.get("last_seen"))
            if seen is not None:
                last_seen.add_metric([str(location.get("name"))], seen)
        online = GaugeMetricFamily("probeops_locations_online", "Locations (agents) online now")
        online.add_metric([], len(found))
        return [last_seen, online]


def _epoch(iso_time):
    """Seconds since the epoch for the contract's ``...Z`` times; None when absent or unreadable."""
    if not iso_time:
        return None
    try:
        return datetime.fromisoformat(str(iso_time).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _DefaultRegistryView:
    """This process's own metrics (single-process mode), as one collector of a scrape's registry."""

    def collect(self):
        return DEFAULT_REGISTRY.collect()


def render(app):
    """The text exposition of every worker's metrics plus the scrape-time figures."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistryView())
    registry.register(ScrapeTimeCollector(app))
    return generate_latest(registry)


def token_accepted(config, authorization):
    """True when METRICS_TOKEN is unset, or ``authorization`` is ``Bearer <METRICS_TOKEN>`` (constant time)."""
    token = config.get("METRICS_TOKEN") or ""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def init_app(app):
    """Time and count every answer (registered so that it sees the final status)."""
    app.before_request(start_timer)
    app.after_request(observe_request)


def scrape():
    """The /metrics answer's body, for the current app."""
    return render(current_app._get_current_object())
