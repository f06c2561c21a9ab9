"""The authenticated hot path on Redis (docs/benchmarks.md, "The hot path"), on SQLite and PostgreSQL.

A warm ``GET /api/users/me`` with an API key costs one Redis command — the general budget's count
and window in one Lua call — and no identifying statement, while the ``RateLimit-*`` headers still
count down by one and a change announced by another worker still empties the cached identity at
once (across real Gunicorn workers: tests/security/test_revocation.py).
"""
import time

import pytest
import redis
import sqlalchemy as sa

from tests.conftest import PASSWORD
from tests.support.sql import recorded_statements

IDENTITY_TABLES = ("api_keys", "refresh_tokens", "users")
INSIDE_THE_SCRIPT = {"incrby", "expire", "ttl"}  # commandstats counts a script's own calls too


def _key_headers(client, username="alice"):
    assert client.post("/api/users/register", json={"username": username, "email": f"{username}@example.com",
                                                    "password": PASSWORD}).status_code == 201
    token = client.post("/api/users/login", json={"username": username, "password": PASSWORD}).get_json()["token"]
    created = client.post("/api/apikeys", json={"name": "hot path"}, headers={"Authorization": f"Bearer {token}"})
    body = created.get_json()["api_key"]
    return {"X-API-Key": body["key"]}, body["id"]


@pytest.fixture
def statements(app_on_redis):
    with recorded_statements() as seen:
        yield seen


def _identifying(statements):
    """The statements that read who the caller is (users, keys, sessions)."""
    return [s for s in statements if any(table in s for table in IDENTITY_TABLES) and "probe_jobs" not in s]


def _warm(client, headers, statements):
    """Requests until one is answered from the worker's identity cache (its subscription to the
    invalidation channel is up); returns that answer."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        statements.clear()
        answer = client.get("/api/users/me", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        if not _identifying(statements):
            return answer
        time.sleep(0.05)
    raise AssertionError("every request read the identity from the database")


def _commands(server):
    stats = redis.Redis.from_url(server.url).info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items() if name != "cmdstat_info"}


def test_a_warm_request_is_one_redis_command_and_no_identity_statement(app_on_redis, redis_server,
                                                                         statements):
    client = app_on_redis.test_client()
    headers, _ = _key_headers(client)
    first = _warm(client, headers, statements)
    before = _commands(redis_server)
    answers = [client.get("/api/users/me", headers=headers) for _ in range(10)]
    after = _commands(redis_server)

    assert [a.status_code for a in answers] == [200] * 10
    assert _identifying(statements) == []
    used = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    round_trips = {name: calls for name, calls in used.items() if name not in INSIDE_THE_SCRIPT}
    assert round_trips == {"evalsha": 10}, used  # one Lua call per request: nothing else
    remaining = int(first.headers["RateLimit-Remaining"])
    assert [int(a.headers["RateLimit-Remaining"]) for a in answers] == list(range(remaining - 1, remaining - 11, -1))
    assert all(a.headers["RateLimit-Limit"] == first.headers["RateLimit-Limit"] for a in answers)


def test_a_change_announced_by_another_worker_empties_the_cache_at_once(app_on_redis, redis_server,
                                                                       statements):
    """The key is switched off behind this process's back (as another worker's commit would), so
    only the message on the channel can tell this process; its cache would otherwise keep the
    row for AUTH_CACHE_SECONDS."""
    from app.auth import cache
    from app.extensions import db

    app_on_redis.config["AUTH_CACHE_SECONDS"] = cache.MAX_AGE_SECONDS
    client = app_on_redis.test_client()
    headers, key_id = _key_headers(client)
    _warm(client, headers, statements)
    cache.clear()
    assert client.get("/api/users/me", headers=headers).status_code == 200  # read now: the entry is fresh
    read_at = time.monotonic()
    with db.engines["autocommit"].connect() as conn:
        conn.execute(sa.text("UPDATE api_keys SET is_active = false WHERE id = :id"), {"id": key_id})
    assert client.get("/api/users/me", headers=headers).status_code == 200  # cached: the change is unseen

    redis.Redis.from_url(redis_server.url).publish(cache.CHANNEL, b"1")
    while client.get("/api/users/me", headers=headers).status_code != 401:
        assert time.monotonic() - read_at < cache.MAX_AGE_SECONDS * 0.8, "the message did not empty the cache"
        time.sleep(0.01)
