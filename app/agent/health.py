"""`python -m app.agent.health`: exit 0 when this agent's heartbeat is in Redis (a container healthcheck)."""
import sys

from app.agent.heartbeat import redis_client
from app.agent.protocol import agent_key
from app.agent.settings import AgentConfigError, from_environ


def main():
    """0: announced and online; 1: not (or the broker is unreachable)."""
    try:
        settings = from_environ()
        online = redis_client(settings.broker_url, timeout=3.0).exists(agent_key(settings.name))
    except (AgentConfigError, Exception) as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0 if online else 1


if __name__ == "__main__":
    sys.exit(main())
