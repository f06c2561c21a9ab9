"""Tell the API processes that a job's result is stored (Redis pub/sub; they also poll the row)."""
import logging

import redis

from app.agent.heartbeat import redis_client
from app.agent.protocol import RESULTS_CHANNEL

log = logging.getLogger("probeops.worker")


class ResultNotifier:
    """Publishes stored job ids on RESULTS_CHANNEL; a lost notice only delays a waiter's poll."""

    def __init__(self, broker_url):
        self.client = redis_client(broker_url, timeout=2.0)

    def stored(self, job_id):
        """Publish that `job_id` has ended (never raises)."""
        try:
            self.client.publish(RESULTS_CHANNEL, str(job_id))
        except redis.RedisError as exc:
            log.warning("job %s stored; the notice was not published (%s)", job_id, type(exc).__name__)
