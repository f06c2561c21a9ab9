"""The Celery configuration shared by the agents, the central worker and the API's dispatcher."""
import ssl
from urllib.parse import parse_qs, urlsplit

from celery import Celery


def _tls_options(broker_url):
    """For rediss:// without ssl_cert_reqs in the URL: verify the server's certificate."""
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def make_celery(name, broker_url, *, concurrency=None, timeout=None, ack_emulation=True):
    """A Celery app over Redis: JSON only, no result backend, a message acknowledged after its task
    (the agents' probes: as they start, app/agent/main.py).

    `timeout` bounds connecting and each socket operation (the API's dispatcher uses ~1 s so that a
    broker that is down is a prompt 503; workers leave it unset and wait for the broker).
    `ack_emulation=False` (the agents): a message taken off its queue is kept in the consumer's
    memory until acknowledged, not in Redis' shared `unacked` hash. See docs/agents.md.
    """
    app = Celery(name, broker=broker_url, set_as_current=False)
    transport = {"visibility_timeout": 3600, "health_check_interval": 10, "socket_keepalive": True,
                 "ack_emulation": ack_emulation}
    if timeout is not None:
        transport.update(socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False,
                         max_retries=0)  # connecting: fail at once, no back-off; the caller retries
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,              # the central worker's reports: a message lost with the worker is not
        task_reject_on_worker_lost=True,  # acknowledged and comes back (the agents' probes: app/agent/main.py)
        worker_prefetch_multiplier=1,
        worker_concurrency=concurrency,
        worker_pool="threads",            # probes wait on sockets: threads, one process
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,    # the app's log lines go to stdout: not logged twice
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for its broker for ever, never exits
        broker_connection_timeout=timeout or 4.0,
        broker_transport_options=transport,
        broker_use_ssl=_tls_options(broker_url),
    )
    return app
