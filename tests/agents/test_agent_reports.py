"""What travels back from the agents: a burst of results leaves an agent in a few messages, a probe
runs once even when its agent loses the broker mid-probe, and the central worker still takes the
task names of agents older than `probeops.store_reports`.

Real processes: a Redis broker, `./start.sh agent` (no central worker for the first test: its
messages are read off the central queue as the central worker would receive them) and, for the
second, the loopback stack's central worker and database.
"""
import base64
import json
import time
from datetime import UTC, datetime

import pytest
import redis

from app.agent import protocol
from app.agent.celery_app import make_celery
from app.probes.execute import outcome
from app.probes.spec import ProbeSpec
from tests.agents.conftest import Stack, create, headers_for, wait_finished
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.slow]

BOUNDS = {"ping_interval": 0.2, "ping_timeout": 2.0, "dns_timeout": 3.0}


def _reports_on_the_central_queue(client):
    """[(location, [report, ...]) per message] waiting on the central queue, oldest first."""
    messages = []
    for raw in reversed(client.lrange(protocol.CENTRAL_QUEUE, 0, -1)):  # LPUSHed: newest first
        message = json.loads(raw)
        assert message["headers"]["task"] == protocol.STORE_REPORTS, message["headers"]
        args = json.loads(base64.b64decode(message["body"]))[0]
        messages.append((args[0], args[1]))
    return messages


def _started_agent(stack, client, name, **settings):
    agent = stack.start_agent(name, **settings)
    give_up = time.monotonic() + 60
    while not (client.get(protocol.agent_key(name)) and "ready." in agent.output()):
        assert agent.proc.poll() is None and time.monotonic() < give_up, agent.output()[-2000:]
        time.sleep(0.2)
    return agent


def test_a_burst_of_probes_reports_in_a_few_messages_with_every_result_and_notice(tmp_path):
    broker = RedisServer().start()
    stack = Stack(broker, tmp_path, "127.0.0.1")
    client = redis.Redis.from_url(broker.url)
    try:
        agent = _started_agent(stack, client, "solo", concurrency=40)
        celery = make_celery("test-publisher", broker.url)
        jobs = range(1001, 1031)  # 30 pings of 3 echoes 0.3 s apart: each runs well past the notice's 0.2 s
        with celery.producer_or_acquire() as producer, producer.batch():
            for job_id in jobs:
                spec = ProbeSpec("ping", "127.0.0.1", {"count": 3, "interval": 0.3}, BOUNDS, time.time() + 30)
                celery.send_task(protocol.RUN_PROBE, args=[job_id, spec.to_dict()], producer=producer,
                                 queue=protocol.location_queue("solo"))
        give_up = time.monotonic() + 30
        while True:
            messages = _reports_on_the_central_queue(client)
            results = {r["job_id"]: r for _, reports in messages for r in reports if r["outcome"] is not None}
            if len(results) == len(jobs) or time.monotonic() > give_up:
                break
            time.sleep(0.2)
        notices = [r["job_id"] for _, reports in messages for r in reports if r["outcome"] is None]
    finally:
        stack.stop()
        broker.stop()
    assert sorted(results) == list(jobs), agent.output()[-3000:]
    assert all(r["outcome"]["success"] and r["outcome"]["status"] == "finished" for r in results.values())
    assert sorted(notices) == list(jobs)  # each "started" notice once, before its result
    assert {location for location, _ in messages} == {"solo"}
    # 60 reports: one message each before the reports were coalesced; now a burst shares messages
    assert len(messages) <= 15, [len(reports) for _, reports in messages]


def test_a_probe_runs_once_when_its_agent_loses_the_broker_mid_probe(tmp_path):
    """Every connection of the agent cut while its probe runs: kombu gives back to the queue what the
    closing channel holds unacknowledged, and a probe acknowledged only at its end would run again
    after the reconnect. Acknowledged as it starts, it runs once and its result still arrives."""
    broker = RedisServer().start()
    stack = Stack(broker, tmp_path, "127.0.0.1")
    client = redis.Redis.from_url(broker.url)
    try:
        agent = _started_agent(stack, client, "blip")
        spec = ProbeSpec("ping", "127.0.0.1", {"count": 8, "interval": 0.3}, BOUNDS, time.time() + 30)  # ~2.1 s
        make_celery("test-publisher", broker.url).send_task(protocol.RUN_PROBE, args=[2001, spec.to_dict()],
                                                            queue=protocol.location_queue("blip"))
        give_up = time.monotonic() + 30
        while not _reports_on_the_central_queue(client):  # its "started" notice: the probe is running
            assert time.monotonic() < give_up, agent.output()[-2000:]
            time.sleep(0.05)
        assert client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") >= 1
        give_up = time.monotonic() + 30
        while not any(r["outcome"] for _, reports in _reports_on_the_central_queue(client) for r in reports):
            assert time.monotonic() < give_up, agent.output()[-3000:]
            time.sleep(0.1)
        time.sleep(4.0)  # a second run, had the message come back, would have ended by now
        reports = [r for _, batch in _reports_on_the_central_queue(client) for r in batch]
        left_on_queue = client.llen(protocol.location_queue("blip"))
        output = agent.output()
    finally:
        stack.stop()
        broker.stop()
    assert "Connection to broker lost" in output, output[-3000:]  # the cut did reach the agent's consumer
    results = [r for r in reports if r["outcome"] is not None]
    assert [r["job_id"] for r in results] == [2001], output[-3000:]
    assert results[0]["outcome"]["success"], results[0]
    assert [r["job_id"] for r in reports if r["outcome"] is None] == [2001]  # one start, one notice
    assert left_on_queue == 0


def test_the_central_worker_still_takes_the_task_names_of_older_agents(loop_broker, tmp_path):
    """`probeops.mark_started` then `probeops.store_result`, as agents before 1.1's store_reports send."""
    from tests.conftest import migrate

    stack = Stack(loop_broker, tmp_path, "127.0.0.1")
    migrate(stack.database_url)
    client = redis.Redis.from_url(loop_broker.url)
    location = {"name": "old-1", "tags": ["old"], "version": "1.0.0",
                "last_seen": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    client.set(protocol.agent_key("old-1"), json.dumps(location), ex=120)  # online, consuming nothing
    try:
        stack.start_worker()
        app = stack.app()
        with app.app_context():
            api = app.test_client()
            headers = headers_for(app)
            created = create(api, headers, type="ping", target="127.0.0.1", options={"count": 1},
                             locations=[{"name": "old-1"}])
            job_id = api.get(f"/api/measurements/{created['id']}", headers=headers).get_json()["results"][0]["job_id"]
            celery = make_celery("test-old-agent", loop_broker.url)
            started = time.time()
            celery.send_task(protocol.MARK_STARTED, args=[job_id, started, "old-1"], queue=protocol.CENTRAL_QUEUE)
            give_up = time.monotonic() + 30
            while True:  # queued -> running, from the old notice alone
                result = api.get(f"/api/measurements/{created['id']}", headers=headers).get_json()["results"][0]
                if result["started_at"] is not None:
                    break
                assert time.monotonic() < give_up, (result, stack.worker.output()[-2000:])
                time.sleep(0.1)
            assert result["status"] == "in-progress"
            celery.send_task(protocol.STORE_RESULT, queue=protocol.CENTRAL_QUEUE, args=[
                job_id, outcome("finished", True, "1 packets transmitted, 1 received", {"received": 1}), "old-1"])
            body = wait_finished(api, headers, created["id"], seconds=30)
    finally:
        stack.stop()
        client.delete(protocol.agent_key("old-1"))
    result = body["results"][0]
    assert result["status"] == "finished" and result["success"] is True
    assert result["result"] == "1 packets transmitted, 1 received" and result["data"] == {"received": 1}
    assert result["location"]["name"] == "old-1"
    assert abs(datetime.fromisoformat(result["started_at"]).timestamp() - started) < 1.0
