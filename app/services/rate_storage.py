"""The rate limiter's Redis storage, counting a hit and reading its window in one round trip.

limits' ``incr`` (one Lua call) returns only the count; the ``RateLimit-*`` headers then need the
window's TTL, a second round trip on every request. ``hit`` here returns both from one Lua call
(``app.services.budget`` uses it for the general budget).

Defining the class registers it for the ``redis``/``rediss``/``redis+unix`` schemes in limits'
storage registry (``limits._storage_scheme.StorageRegistry``), so ``RATELIMIT_STORAGE_URI``
keeps its usual form. It must be imported before the limiter is bound (``app.extensions`` does).
"""
import time

from limits.storage import RedisStorage

# limits' incr_expire.lua, returning the key's TTL beside the count.
INCR_WINDOW = """
local amount = tonumber(ARGV[2])
local current = redis.call('incrby', KEYS[1], amount)
if current == amount then
    redis.call('expire', KEYS[1], ARGV[1])
end
return {current, redis.call('ttl', KEYS[1])}
"""


class WindowedRedisStorage(RedisStorage):
    """limits' RedisStorage with ``hit``: count and window end in one round trip."""

    STORAGE_SCHEME = ["redis", "rediss", "redis+unix"]

    def initialize_storage(self, uri):
        super().initialize_storage(uri)
        self.lua_incr_window = self.get_connection().register_script(INCR_WINDOW)

    def hit(self, key, expiry, amount=1):
        """Add ``amount`` to ``key``'s counter (a new window lasts ``expiry`` s); return the count
        and the window's end (epoch seconds)."""
        current, ttl = self.lua_incr_window([self.prefixed_key(key)], [expiry, amount])
        return int(current), time.time() + max(int(ttl), 0)

    def incr(self, key, expiry, amount=1):
        return self.hit(key, expiry, amount)[0]
