"""Fixtures: real PostgreSQL and Redis servers, the app on each database, users and tokens."""
import gc
import logging
import os
import shutil
import uuid

import pytest
import sqlalchemy as sa

from tests.support.servers import PostgresServer, RedisServer

LAB_PLUGIN = os.path.join(os.path.dirname(__file__), "lab", "fixtures.py")
pytest_plugins = ["tests.lab.fixtures"] if os.path.exists(LAB_PLUGIN) else []
pytest_plugins.append("tests.support.openapi_check")  # every test-client response checked against the OpenAPI document
pytest_plugins.append("tests.support.pauses")  # the longest pauses of this process, in the summary


@pytest.fixture(autouse=True)
def _earlier_tests_objects_are_never_scanned_again():
    """After each test, collect its garbage and freeze what is left (gc.freeze).

    Every app a test builds stays reachable (its job sweeper and executor threads live to the end
    of the session), so the heap grows with the suite; a full collection over it took 5.6 s late
    in a run, stopping every thread of this process - and failing the tests that watch a probe
    "while" it runs. Frozen objects are not scanned again: each collection covers one test's objects.
    """
    yield
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session, exitstatus):
    """The test apps' job sweepers are daemon threads that outlive the session: once the servers
    are stopped, they logged the database going away after the summary (and, into pytest's closed
    capture streams, "--- Logging error ---" tracebacks). Nothing they log then is a test's."""
    logging.raiseExceptions = False
    logging.disable(logging.CRITICAL)


PASSWORD = "correct horse battery staple"
TABLES = ("probe_jobs", "api_keys", "request_stats", "users")
# Loopback 127.0.0.1 and the probe lab are allowed; any other loopback address is not, which
# lets tests prove the guard refuses special-purpose targets without touching a real network.
ALLOWED_NETWORKS = "127.0.0.1/32,::1/128,198.18.0.0/15,fd00:198:18::/48"


def build_app(database_url, **overrides):
    from app import create_app

    config = {"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
              "PROBE_ALLOWED_NETWORKS": ALLOWED_NETWORKS, "DNS_NAMESERVERS": ["127.0.0.1"],
              "PING_INTERVAL": 0.05, "PING_TIMEOUT": 1.0, "STATS_FLUSH_SECONDS": 0.0}
    config.update(overrides)
    return create_app(config)


def migrate(database_url):
    """Create the schema the only way production does: Alembic migrations."""
    from flask_migrate import upgrade

    app = build_app(database_url)
    with app.app_context():
        upgrade()
        from app.extensions import db

        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database(postgres):
    url = postgres.create_database("probeops_test")
    migrate(url)
    return url


def _truncate(url):
    from app.config import normalize_database_url

    engine = sa.create_engine(normalize_database_url(url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A freshly migrated, empty database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "probeops.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    _truncate(url)
    return url


@pytest.fixture
def app_overrides():
    """Tests override config by overriding this fixture or parametrizing it."""
    return {}


@pytest.fixture
def app(database_url, app_overrides):
    app = build_app(database_url, **app_overrides)
    with app.app_context():
        yield app
        from app.extensions import db, limiter

        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
        limiter.reset()


@pytest.fixture
def app_on_redis(database_url, redis_server):
    """The app with its rate-limit counters in Redis, as production runs it across workers."""
    app = build_app(database_url, RATELIMIT_STORAGE_URI=redis_server.url)
    with app.app_context():
        yield app
        from app.extensions import db, limiter

        limiter.reset()
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_session(app):
    from app.extensions import db

    return db.session


@pytest.fixture
def make_user(app):
    """Create a user directly (role and tier as given); returns the User row."""
    from app.services import users

    def make(username=None, role="user", tier="Free", password=PASSWORD, email=None):
        username = username or f"user{uuid.uuid4().hex[:8]}"
        return users.register(username, email or f"{username}@example.com", password, role=role, tier=tier)

    return make


@pytest.fixture
def auth_headers(app):
    """A real JWT for ``user``, as the Authorization header."""
    from app.auth.tokens import issue_token
    from app.utils.clock import utcnow

    def headers(user):
        token = issue_token(user, app.config["JWT_SECRET_KEY"], 60, utcnow())
        return {"Authorization": f"Bearer {token}"}

    return headers


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def admin(make_user):
    return make_user("root", role="admin", tier="Enterprise")


def count_rows(table):
    from app.extensions import db

    return db.session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
