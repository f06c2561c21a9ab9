"""Open measurement event streams: counted per worker process (each holds a request thread) and
per user across every worker when the rate limiter's storage is Redis.

The per-user count is a Redis sorted set per user: one entry per open stream, scored with when
it expires (the stream's time bound plus a margin), so a worker killed mid-stream frees its
users' slots by itself. With the limiter in memory (one worker, by start.sh), or while Redis
does not answer, each worker counts its own streams as before.
"""
import itertools
import logging
import os
import threading
import time

import redis
from limits.storage import RedisStorage

from app.db.faults import active_rate_limit_storage
from app.domain_errors import CapacityExceeded
from app.errors import ApiError

log = logging.getLogger("probeops")

KEY_PREFIX = "probeops:streams:"  # + user id
EXPIRY_MARGIN_SECONDS = 60.0

# KEYS[1]: the user's open streams; ARGV: now, this stream's expiry, the cap, this stream's token
TAKE = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('expireat', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""


def _too_many(cap):
    return ApiError(429, f"You already have {cap} measurement streams open; close one first",
                    {"Retry-After": "5"}, code="concurrency_limit")


def _shared_client():
    """The limiter's Redis client, or None (memory storage, or fallen back to memory)."""
    storage = active_rate_limit_storage()
    return storage.get_connection() if isinstance(storage, RedisStorage) else None


class StreamSlots:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.per_user = {}
        self.ids = itertools.count(1)
        self.script = (None, None)  # (client, TAKE registered on it): registered once per client

    def take(self, user_id, per_user_cap, per_worker_cap, seconds):
        """A slot for one more stream of ``user_id`` (open at most ``seconds``); returns the
        function that gives it back. 429 ``concurrency_limit`` past the user's cap, 503
        ``server_busy`` past this worker's."""
        with self.lock:
            if self.per_user.get(user_id, 0) >= per_user_cap:
                raise _too_many(per_user_cap)
            if self.total >= per_worker_cap:
                raise CapacityExceeded("The server has as many measurement streams open as it can; retry shortly")
            self.total += 1
            self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        token = f"{os.getpid()}:{next(self.ids)}"
        try:
            shared = self._take_shared(user_id, per_user_cap, seconds, token)
        except BaseException:
            self._give_back_local(user_id)
            raise
        if shared is False:
            self._give_back_local(user_id)
            raise _too_many(per_user_cap)

        def give_back():
            self._give_back_local(user_id)
            if shared:
                self._give_back_shared(user_id, token)

        return give_back

    def _take_shared(self, user_id, cap, seconds, token):
        """True: counted in Redis; False: the user's cap is reached there; None: not counted there."""
        client = _shared_client()
        if client is None:
            return None
        now = time.time()
        try:
            taken = self._take_script(client)(keys=[KEY_PREFIX + str(user_id)],
                                              args=[now, now + seconds + EXPIRY_MARGIN_SECONDS, cap, token])
        except (redis.RedisError, OSError) as exc:
            log.warning("measurement streams counted in this worker only: Redis did not answer (%s)",
                        type(exc).__name__)
            return None
        return bool(taken)

    def _take_script(self, client):
        registered_on, script = self.script
        if registered_on is not client:
            script = client.register_script(TAKE)
            self.script = (client, script)
        return script

    def _give_back_shared(self, user_id, token):
        client = _shared_client()
        if client is None:
            return
        try:
            client.zrem(KEY_PREFIX + str(user_id), token)
        except (redis.RedisError, OSError):
            pass  # the entry expires by itself

    def _give_back_local(self, user_id):
        with self.lock:
            self.total -= 1
            left = self.per_user.get(user_id, 1) - 1
            if left:
                self.per_user[user_id] = left
            else:
                self.per_user.pop(user_id, None)
