"""Issue 8 item 12: no log line holds an email, a password, a hash, a token or an API key.

Writes fail for real: the SQLite write lock or PostgreSQL table locks held by another connection
past a short busy / statement timeout, a stopped PostgreSQL, a real unique violation. Everything
logged meanwhile (every logger, tracebacks formatted as a log handler formats them) is scanned
for the secrets the failing statements carried.
"""
import logging
import re
import sqlite3

import psycopg2
import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD, build_app

BCRYPT = re.compile(r"\$2[aby]\$\d\d\$")
HEX_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")


class LogText(logging.Handler):
    """Every record of every logger, formatted with its traceback as a real handler would."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))

    @property
    def text(self):
        return "\n".join(self.lines)


@pytest.fixture
def logs():
    handler = LogText()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def assert_no_secrets(text, *secrets):
    for secret in secrets:
        assert secret not in text, f"a secret reached the log: {secret[:4]}..."
    assert not BCRYPT.search(text), "a bcrypt hash reached the log"
    assert not HEX_DIGEST.search(text), "an API-key digest reached the log"


class WriteLock:
    """Another connection holding the write lock on users and api_keys (reads still pass)."""

    def __init__(self, url):
        self.url = url
        self.conn = None

    def __enter__(self):
        if self.url.startswith("sqlite"):
            self.conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = psycopg2.connect(self.url)
            self.conn.cursor().execute("LOCK TABLE users, api_keys IN EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def make_app(database_url):
    return build_app(database_url, DB_SQLITE_BUSY_TIMEOUT=0.3, DB_STATEMENT_TIMEOUT=0.5, API_KEY_TOUCH_SECONDS=0,
                     LOGIN_FAILURE_WINDOW_SECONDS=60)


def test_failed_writes_log_no_email_password_hash_token_or_key(database_url, logs):
    app = make_app(database_url)
    client = app.test_client()
    email = "secret.person@example.com"
    assert client.post("/api/users/register", json={"username": "victim", "email": email,
                                                    "password": PASSWORD}).status_code == 201
    token = client.post("/api/users/login", json={"email": email, "password": PASSWORD}).get_json()["token"]
    key = client.post("/api/apikeys", headers={"Authorization": f"Bearer {token}"},
                      json={"description": "k"}).get_json()["api_key"]["key"]
    logs.lines.clear()

    other_email = "another.person@example.com"
    other_password = "another long password 42"
    with WriteLock(database_url):
        register = client.post("/api/users/register", json={"username": "other", "email": other_email,
                                                            "password": other_password})
        new_key = client.post("/api/apikeys", headers={"Authorization": f"Bearer {token}"},
                              json={"description": "during the lock"})
        by_key = client.get("/api/users/me", headers={"X-API-Key": key})  # touches last_used_at: a write
    assert register.status_code == 503 and register.get_json()["code"] == "service_unavailable"
    assert new_key.status_code == 503
    assert by_key.status_code in (200, 503)
    assert logs.lines, "the failed writes were not logged at all"
    assert_no_secrets(logs.text, email, other_email, PASSWORD, other_password, token, key)


def test_a_traceback_of_a_real_constraint_violation_holds_no_values(database_url, logs):
    """A database error that is a bug (here a duplicate row) is logged with its traceback, but
    the traceback says which constraint and statement, never the values."""
    from app.auth.api_keys import generate_key
    from app.db.models import User
    from app.extensions import db

    app = make_app(database_url)
    email = "dupe.person@example.com"
    _key, digest, _prefix = generate_key()
    row = {"username": "dupe", "email": email, "password_hash": "$2b$04$" + "x" * 53, "role": "user",
           "subscription_tier": "Free", "is_active": True, "token_version": 0}
    with app.app_context():
        db.session.execute(sa.insert(User).values(**row))
        db.session.commit()
        try:
            db.session.execute(sa.insert(User).values(**{**row, "username": digest}))
            db.session.commit()
        except sa.exc.IntegrityError:
            db.session.rollback()
            logging.getLogger("probeops").exception("could not insert")
        db.session.remove()
    assert "Traceback" in logs.text and "IntegrityError" in logs.text
    assert_no_secrets(logs.text, email, digest)


def test_a_stopped_postgres_logs_no_secrets(logs):
    from tests.conftest import migrate
    from tests.support.servers import PostgresServer

    server = PostgresServer().start()
    try:
        url = server.create_database("probeops_logs")
        migrate(url)
        app = make_app(url)
        client = app.test_client()
        email = "stopped.person@example.com"
        assert client.post("/api/users/register", json={"username": "stopper", "email": email,
                                                        "password": PASSWORD}).status_code == 201
        token = client.post("/api/users/login", json={"email": email, "password": PASSWORD}).get_json()["token"]
        root = logging.getLogger()
        if logs not in root.handlers:  # alembic's logging setup drops the root handlers
            root.addHandler(logs)
        root.setLevel(logging.DEBUG)
        logs.lines.clear()
        server.halt()
        answers = [client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"}).status_code,
                   client.post("/api/users/login", json={"email": email, "password": PASSWORD}).status_code,
                   client.post("/api/users/register", json={"username": "third", "email": "t" + email,
                                                            "password": PASSWORD}).status_code]
        assert answers == [503, 503, 503]
        assert logs.lines
        assert_no_secrets(logs.text, email, PASSWORD, token)
    finally:
        server.stop()
