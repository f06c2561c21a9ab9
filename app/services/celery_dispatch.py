"""The dispatcher for agents: probes go through Celery (Redis) to the agents online.

- `submit_all` publishes `probeops.run_probe(job_id, spec)` on each location's queue, all of a
  measurement in one round trip (kombu's publish batch: one Redis pipeline), bounded by
  BROKER_TIMEOUT: a broker that is down is a 503 `service_unavailable` at once, and the next
  call tries again (no restart needed).
- `locations` reads the agents' heartbeats (`probeops:agent:*`), cached for a second.
- `wait` returns when the job's row has ended: woken by the central worker's notice on
  `probeops:results`, with a poll of the row as the fallback.
"""
import json
import logging
import os
import random
import threading
import time
from datetime import UTC, datetime

import redis
from kombu.exceptions import KombuError, OperationalError

from app.agent import protocol
from app.agent.celery_app import make_celery
from app.agent.heartbeat import redis_client
from app.errors import ApiError

log = logging.getLogger("probeops")

LOCATIONS_CACHE_SECONDS = 1.0
POLL_SECONDS = 0.25          # the row is read this often while waiting, whatever the notices do
RETRY_AFTER = "5"


def broker_unavailable():
    """The contract's 503 for a broker that is down."""
    return ApiError(503, "The probe broker is unavailable; try again shortly",
                    headers={"Retry-After": RETRY_AFTER}, code="service_unavailable")


class _Waiters:
    """One pub/sub listener thread per process; wakes the threads waiting for a job id."""

    def __init__(self, broker_url):
        self.broker_url = broker_url
        self.lock = threading.Lock()
        self.events = {}
        self.thread = None

    def register(self, job_id):
        event = threading.Event()
        with self.lock:
            self.events.setdefault(job_id, set()).add(event)
            if self.thread is None:
                self.thread = threading.Thread(target=self._listen, name="probeops-results", daemon=True)
                self.thread.start()
        return event

    def unregister(self, job_id, event):
        with self.lock:
            waiting = self.events.get(job_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self.events[job_id]

    def _wake(self, job_id):
        with self.lock:
            for event in self.events.get(job_id, ()):
                event.set()

    def _listen(self):
        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2, socket_timeout=5,
                                      health_check_interval=10)
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(protocol.RESULTS_CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        for job_id in bytes(message["data"]).split(b","):  # a batch: "12,13,20"
                            try:
                                self._wake(int(job_id))
                            except ValueError:
                                pass
            except redis.RedisError:
                time.sleep(1.0)  # the broker is away: waiters poll their rows meanwhile
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass


class CeleryDispatcher:
    """Dispatch to agents through the broker (see the module docstring)."""

    name = "celery"

    def __init__(self, config):
        self.broker_url = config["CELERY_BROKER_URL"]
        self.timeout = float(config.get("BROKER_TIMEOUT", 1.0))
        self.offline_seconds = float(config.get("AGENT_OFFLINE_SECONDS", 30.0))
        self.default_name = config.get("DEFAULT_LOCATION") or None
        self._pid = None
        self._lock = threading.Lock()

    # -- per-process resources (a fork must not share the parent's sockets or threads)
    def _resources(self):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._celery = make_celery("probeops-api", self.broker_url, timeout=self.timeout)
                    self._redis = redis_client(self.broker_url, timeout=self.timeout)
                    self._waiters = _Waiters(self.broker_url)
                    self._cache = (float("-inf"), [])
                    self._pid = os.getpid()
        return self

    # -- the interface
    def submit(self, job_id, spec, location):
        """Queue `spec` for the agent `location` (see `submit_all`)."""
        self.submit_all([(job_id, spec, location)])

    def submit_all(self, jobs):
        """Queue each `(job_id, spec, location)` in one round trip; ApiError 503 within BROKER_TIMEOUT
        if the broker is down, and then none was queued as far as the broker answered (a message
        that got through anyway finds its job row gone, and is dropped)."""
        self._resources()
        try:
            with self._celery.producer_or_acquire() as producer, producer.batch():
                for job_id, spec, location in jobs:
                    # argsrepr: Celery's own repr of the arguments costs more than the publish
                    self._celery.send_task(protocol.RUN_PROBE, args=[job_id, spec.to_dict()],
                                           queue=protocol.location_queue(location), declare=protocol.NO_DECLARE,
                                           retry=False, expires=datetime.fromtimestamp(spec.deadline, UTC),
                                           producer=producer, argsrepr=f"({job_id}, {spec.type!r})", kwargsrepr="{}")
        except (OperationalError, KombuError, redis.RedisError, OSError) as exc:
            log.warning("broker unavailable for jobs %s (%s)", ",".join(str(job[0]) for job in jobs[:10]),
                        type(exc).__name__)
            raise broker_unavailable() from None

    def locations(self):
        """The LOCATION dicts of the agents online now (sorted by name); 503 if the broker is down."""
        self._resources()
        cached_at, cached = self._cache
        if time.monotonic() - cached_at < LOCATIONS_CACHE_SECONDS:
            return [dict(location) for location in cached]
        try:
            keys = list(self._redis.scan_iter(match=protocol.AGENT_KEY_PREFIX + "*", count=1000))
            values = self._redis.mget(keys) if keys else []
        except redis.RedisError as exc:
            log.warning("broker unavailable for the agents' list (%s)", type(exc).__name__)
            raise broker_unavailable() from None
        online = sorted((loc for loc in map(self._parse, values) if loc is not None), key=lambda loc: loc["name"])
        self._cache = (time.monotonic(), online)
        return [dict(location) for location in online]

    def default_location(self):
        """DEFAULT_LOCATION when it is online, else (when unset) any online agent; None: none is."""
        online = self.locations()
        if self.default_name:
            return next((loc for loc in online if loc["name"] == self.default_name), None)
        return random.choice(online) if online else None

    def wait(self, job_id, timeout):
        """Return once the job's row has ended (or is gone), or after `timeout` seconds."""
        self._resources()
        deadline = time.monotonic() + timeout
        event = self._waiters.register(job_id)
        try:
            while not _job_has_ended(job_id):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                event.wait(min(remaining, POLL_SECONDS))
                event.clear()
        finally:
            self._waiters.unregister(job_id, event)

    # -- helpers
    def _parse(self, raw):
        if raw is None:
            return None
        try:
            location = json.loads(raw)
            seen = datetime.fromisoformat(location["last_seen"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if (datetime.now(UTC) - seen).total_seconds() > self.offline_seconds:
            return None
        return location


def _job_has_ended(job_id):
    """True when the job row has ended (or is gone); False too while the database is away."""
    from app.services import job_store

    try:
        return job_store.job_state(job_id) not in job_store.ACTIVE
    except Exception as error:  # noqa: BLE001 - a database that is away: keep waiting
        if not job_store.is_transient(error):
            raise
        return False
