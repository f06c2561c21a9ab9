"""`python -m app.worker.health`: exit 0 when the broker answers (a container healthcheck)."""
import os
import sys

from app.agent.heartbeat import redis_client


def main():
    """0: the central worker's broker answers PING; 1: it does not."""
    try:
        redis_client(os.environ["CELERY_BROKER_URL"], timeout=3.0).ping()
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        print(f"unhealthy: {type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
