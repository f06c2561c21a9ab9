"""Tell the API processes that a job's result is stored (Redis pub/sub; they also poll the row)."""
import logging

import redis

from app.agent.heartbeat import redis_client
from app.agent.protocol import RESULTS_CHANNEL

log = logging.getLogger("probeops.worker")


class ResultNotifier:
    """Publishes stored job ids on RESULTS_CHANNEL, a batch per notice ("12,13,20").

    A lost notice only delays a waiter's poll.
    """

    def __init__(self, broker_url):
        self.client = redis_client(broker_url, timeout=2.0)

    def stored(self, *job_ids):
        """Publish that these jobs have ended, in one notice "12,13,20" (never raises)."""
        try:
            self.client.publish(RESULTS_CHANNEL, ",".join(str(job_id) for job_id in job_ids))
        except redis.RedisError as exc:
            log.warning("jobs %s stored; the notice was not published (%s)",
                        ",".join(map(str, job_ids[:10])), type(exc).__name__)
