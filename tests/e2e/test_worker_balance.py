"""A Gunicorn worker whose threads are all busy leaves new connections to the workers that have
a thread free (app/server/worker.py: it stops accepting, and accepts a few at a time).

Before, the first worker to wake took up to 64 new connections at once: 100 concurrent
synchronous pings ran in two waves (bench: 2.25x one alone), and a request could wait behind
another's probe while another worker sat idle.
"""
import threading
import time

import requests

from tests.e2e.test_start_sh import register_and_login, workers_of
from tests.support.gunicorn import StartedServer


def test_a_request_is_never_held_behind_a_probe_while_another_worker_is_free(tmp_path, redis_server):
    """Two workers with one thread each. While one runs a ~1.5 s ping, a health check on a new
    connection is answered by the other, before the ping ends: every time, not one time in two."""
    env = {"RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "2", "THREADS": "1",
           "PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "PING_INTERVAL": "0.5",
           "RATELIMIT_DEFAULT": "1000 per minute", "RATELIMIT_AUTH": "1000 per minute"}
    srv = StartedServer(env, tmp_path).start()
    try:
        assert len(workers_of(srv, expected=2)) == 2
        headers = register_and_login(srv.url)
        for _attempt in range(4):
            ping_answers = []

            def ping(answers):
                answers.append(requests.post(f"{srv.url}/api/probes/ping", headers=headers,
                                                  json={"host": "127.0.0.1", "count": 4}, timeout=30))

            pinging = threading.Thread(target=ping, args=(ping_answers,))
            pinging.start()
            time.sleep(0.4)  # the ping now holds one worker's only thread
            health = requests.get(f"{srv.url}/api/health", timeout=30)  # a new connection each time
            answered_while_pinging = pinging.is_alive()
            pinging.join()
            assert health.status_code == 200, health.text
            assert [answer.status_code for answer in ping_answers] == [200]
            assert answered_while_pinging, "the health check waited for the ping's worker"
    finally:
        srv.stop()
