"""Names the API, the agents and the central worker agree on: tasks, queues, Redis keys."""
import re

VERSION = "1.1.0"

RUN_PROBE = "probeops.run_probe"          # API -> agent: (job_id, spec_dict)
MARK_STARTED = "probeops.mark_started"    # agent -> central: (job_id, started_epoch, location_name)
STORE_RESULT = "probeops.store_result"    # agent -> central: (job_id, outcome, location_name)
# agent -> central: (location_name, [REPORT, ...]); REPORT = {"job_id", "outcome" (None: a "started"
# notice), "started" (epoch seconds)}. What the agent sends; the two above stay for older agents.
STORE_REPORTS = "probeops.store_reports"

CENTRAL_QUEUE = "probeops.central"
LOCATION_QUEUE_PREFIX = "probeops.loc."
AGENT_KEY_PREFIX = "probeops:agent:"      # + name -> LOCATION JSON, TTL AGENT_OFFLINE_SECONDS
RESULTS_CHANNEL = "probeops:results"      # pub/sub: a job id, published after its result is stored

# Publishing declares no queue: on Redis a message to the default exchange goes straight onto the
# list its routing key names (kombu's anonymous exchange), and the consumer declares its own
# queue. Declaring one copies and binds the Queue entity per message: measured at 0.15 ms of CPU a
# send_task with it, 0.12 without.
NO_DECLARE = ()

AGENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def location_queue(name):
    """The queue an agent named `name` consumes."""
    return LOCATION_QUEUE_PREFIX + name


def agent_key(name):
    """The Redis key an agent's heartbeat writes."""
    return AGENT_KEY_PREFIX + name
