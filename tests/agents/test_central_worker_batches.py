"""The central worker writes the agents' reports in batches (app/utils/group_commit.py): what a user sees
is unchanged. Every result of many measurements at once is stored with where and when it ran, and
results that arrive while PostgreSQL is down are written once it is back (none lost, none stuck).

Real processes: a broker, ./start.sh worker and two ./start.sh agents, on a PostgreSQL of this
module's own (the outage test stops it).
"""
import time

import psycopg2
import pytest

from tests.agents.conftest import Stack, create, headers_for
from tests.conftest import migrate
from tests.support.servers import PostgresServer

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def pg_stack(loop_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agents-batches")
    server = PostgresServer().start()
    url = server.create_database("probeops_batches")
    migrate(url)
    s = Stack(loop_broker, tmp, "127.0.0.1", url)
    s.pg = server
    try:
        s.start_worker()
        s.start_agent("alpha", country="DE", tags="x")
        s.start_agent("beta", country="US", tags="x")
        yield s
    finally:
        s.stop()
        server.stop()


def _serve(stack, **overrides):
    app = stack.app(**overrides)
    stack.wait_online(app, ["alpha", "beta"])
    return app


def _rows(url, measurement_ids):
    """(measurement id, status) and its jobs' (location, status, success, started, completed), straight
    from PostgreSQL; None while it is down."""
    try:
        conn = psycopg2.connect(url, connect_timeout=2)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, status FROM measurements WHERE id = ANY(%s)", (list(measurement_ids),))
            measurements = dict(cur.fetchall())
            cur.execute("SELECT measurement_id, location, status, success, started_at, completed_at, result "
                        "FROM probe_jobs WHERE measurement_id = ANY(%s)", (list(measurement_ids),))
            jobs = cur.fetchall()
        return measurements, jobs
    finally:
        conn.close()


def _wait_all_finished(url, ids, seconds):
    give_up = time.monotonic() + seconds
    while True:
        rows = _rows(url, ids)
        if rows is not None and set(rows[0].values()) == {"finished"}:
            return rows
        assert time.monotonic() < give_up, rows
        time.sleep(0.2)


def test_many_results_at_once_are_each_stored_with_where_and_when_they_ran(pg_stack):
    app = _serve(pg_stack)
    with app.app_context():
        client = app.test_client()
        headers = headers_for(app)
        ids = [create(client, headers, type="ping", target="127.0.0.1", options={"count": 1},
                      locations=[{"tag": "x"}], limit=2)["id"] for _ in range(15)]
    measurements, jobs = _wait_all_finished(pg_stack.database_url, ids, 60)
    assert len(jobs) == 30
    assert sorted(location for _m, location, *_ in jobs) == ["alpha"] * 15 + ["beta"] * 15
    for _m, _location, status, success, started, completed, result in jobs:
        assert (status, success) == ("completed", True), result
        assert started is not None and started <= completed
        assert "1 packets transmitted, 1 received" in result


def test_results_that_arrive_while_postgresql_is_down_are_written_when_it_is_back(pg_stack):
    app = _serve(pg_stack, PROBE_DEADLINE_MARGIN_SECONDS=60)
    url = pg_stack.database_url
    with app.app_context():
        client = app.test_client()
        headers = headers_for(app)
        ids = [create(client, headers, type="ping", target="127.0.0.1", options={"count": 4},
                      locations=[{"tag": "x"}], limit=2)["id"] for _ in range(4)]
        from app.extensions import db

        for engine in db.engines.values():
            engine.dispose()
    give_up = time.monotonic() + 20
    while True:  # every probe has started (the "started" notices are written), none has ended
        _measurements, jobs = _rows(url, ids)
        if all(status == "running" for _m, _l, status, *_ in jobs):
            break
        assert time.monotonic() < give_up, jobs
        time.sleep(0.02)
    pg_stack.pg.halt()
    try:
        time.sleep(3.0)  # 4 pings 0.2 s apart: every result arrives now, and its write fails
    finally:
        pg_stack.pg._run()
    measurements, jobs = _wait_all_finished(url, ids, 60)
    assert len(jobs) == 8
    for _m, _location, status, success, started, completed, result in jobs:
        assert (status, success) == ("completed", True), result  # the real outcome, not a timeout
        assert "4 packets transmitted, 4 received" in result
        assert started < completed
    assert "retry" in pg_stack.worker.output().lower()  # the writes did fail first, then were retried
