"""The agent's announce: its LOCATION written to Redis every few seconds, with a TTL that takes it
offline when it falls silent."""
import json
import logging
import math
import threading
from datetime import UTC, datetime

import redis

from app.agent.protocol import VERSION, agent_key

log = logging.getLogger("probeops.agent")


def redis_client(broker_url, timeout=3.0):
    """A Redis client on the broker (redis:// or rediss://), with bounded socket waits."""
    return redis.Redis.from_url(broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)


class Heartbeat:
    """A daemon thread that announces the agent until stopped."""

    def __init__(self, settings, client=None):
        self.settings = settings
        self.client = client or redis_client(settings.broker_url)
        self.key = agent_key(settings.name)
        self.stopped = threading.Event()
        self.thread = None
        self.failing = False

    def beat(self):
        """Write the LOCATION once; False (logged once per outage) when Redis does not take it."""
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        body = json.dumps(self.settings.location(VERSION, now))
        try:
            self.client.set(self.key, body, ex=max(1, math.ceil(self.settings.offline_seconds)))
        except redis.RedisError as exc:
            if not self.failing:
                log.warning("heartbeat: the broker did not take it (%s); retrying", type(exc).__name__)
            self.failing = True
            return False
        if self.failing:
            log.info("heartbeat: the broker takes it again")
        self.failing = False
        return True

    def start(self):
        """Announce now, then every `heartbeat_seconds` in a daemon thread."""
        if self.thread is None:
            self.beat()
            self.thread = threading.Thread(target=self._run, name="probeops-heartbeat", daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self.stopped.wait(self.settings.heartbeat_seconds):
            self.beat()

    def stop(self):
        """Stop announcing and go offline at once (a killed agent goes offline by the TTL instead)."""
        self.stopped.set()
        try:
            self.client.delete(self.key)
        except redis.RedisError:
            pass
