"""Accounts and secrets (issue 8, items 6-8, 10, 11): each reproduction of the audit is a test here.

Item 9 (JWT secret strength) is in tests/test_config.py.
"""
import http.client
import json
import re
import statistics
import threading
import time
import unicodedata

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.conftest import PASSWORD, build_app, count_rows
from tests.support.gunicorn import STRONG_SECRET, StartedServer

LOGIN = "/api/users/login"
FOUR_ADDRESSES = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]


def login(client, password, address="192.0.2.1", **identity):
    identity = identity or {"email": "alice@example.com"}
    return client.post(LOGIN, json={**identity, "password": password}, environ_base={"REMOTE_ADDR": address})


def run_parallel(calls):
    """Run the callables at the same moment (a barrier), return their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


# --- 6. per-account login throttling -------------------------------------------------------------

def test_forty_wrong_passwords_from_four_addresses_are_throttled_then_the_right_one_waits(client, user):
    """The audit: 40 wrong passwords for one account from four addresses, then the right one worked."""
    answers = [login(client, f"wrong password {i}", FOUR_ADDRESSES[i % 4]) for i in range(40)]
    codes = [answer.status_code for answer in answers]
    assert codes[:5] == [401] * 5
    assert codes.count(429) >= 25
    throttled = next(answer for answer in answers if answer.status_code == 429)
    assert throttled.get_json()["code"] == "rate_limited"
    assert 0 < int(throttled.headers["Retry-After"]) <= 300
    right = login(client, PASSWORD, "192.0.2.99")
    assert right.status_code == 429, "the right password must wait out the back-off too"
    assert int(right.headers["Retry-After"]) > 0


@pytest.fixture
def fast_backoff(app):
    """A back-off short enough to wait out in a test."""
    app.config.update(LOGIN_FREE_FAILURES=2, LOGIN_BACKOFF_BASE_SECONDS=1, LOGIN_BACKOFF_MAX_SECONDS=2)


@pytest.fixture
def long_backoff(app):
    """A back-off that cannot end during a test, however busy the machine."""
    app.config.update(LOGIN_FREE_FAILURES=2, LOGIN_BACKOFF_BASE_SECONDS=60, LOGIN_BACKOFF_MAX_SECONDS=60)


def wait_out(answer):
    time.sleep(int(answer.headers["Retry-After"]) + 0.2)


def test_backoff_is_capped_so_a_stranger_cannot_lock_the_account(client, user, fast_backoff):
    retry_afters = []
    for i in range(30):
        answer = login(client, f"wrong password {i}")
        if answer.status_code == 429:
            retry_afters.append(int(answer.headers["Retry-After"]))
    assert retry_afters and max(retry_afters) <= 2
    # after waiting out the (capped) back-off, the owner logs in
    for _ in range(3):
        answer = login(client, PASSWORD)
        if answer.status_code != 429:
            break
        wait_out(answer)
    assert answer.status_code == 200


def test_a_success_resets_the_backoff(app, client, user):
    app.config.update(LOGIN_FREE_FAILURES=2, LOGIN_BACKOFF_BASE_SECONDS=3, LOGIN_BACKOFF_MAX_SECONDS=3)
    assert [login(client, "wrong password 1").status_code, login(client, "wrong password 2").status_code] == [401, 401]
    third = login(client, "wrong password 3")  # opens the first back-off; its password is checked
    assert third.status_code == 401
    blocked = login(client, PASSWORD)
    assert blocked.status_code == 429
    wait_out(blocked)
    assert login(client, PASSWORD).status_code == 200
    # counted from zero again (from another address, which shares the account's count): two free
    # failures; without the reset the first would open a back-off and the second get 429
    again = [login(client, f"wrong password {i}", "192.0.2.2").status_code for i in (4, 5)]
    assert again == [401, 401]


def test_email_and_username_count_against_the_same_account(client, user, long_backoff):
    assert login(client, "wrong password 1", email="alice@example.com").status_code == 401
    assert login(client, "wrong password 2", username="ALICE").status_code == 401
    assert login(client, "wrong password 3", username="alice").status_code == 401
    assert login(client, "wrong password 4", email="Alice@Example.com").status_code == 429


def test_unknown_accounts_are_throttled_alike_so_the_429_reveals_nothing(client, user, long_backoff):
    known = [login(client, f"wrong {i} password", email="alice@example.com").status_code for i in range(6)]
    unknown = [login(client, f"wrong {i} password", email="nobody@example.com").status_code for i in range(6)]
    assert known == unknown and 429 in known


def test_parallel_attempts_during_backoff_test_one_password_at_most(app, client, user):
    app.config.update(LOGIN_FREE_FAILURES=2, LOGIN_BACKOFF_BASE_SECONDS=60, LOGIN_BACKOFF_MAX_SECONDS=60)
    assert [login(client, "wrong password a").status_code, login(client, "wrong password b").status_code] == [401, 401]

    def attempt(i):
        return lambda: login(app.test_client(), f"wrong password {i}", FOUR_ADDRESSES[i % 4]).status_code

    codes = run_parallel([attempt(i) for i in range(12)])
    assert sorted(codes) == [401] + [429] * 11


def test_strangers_cannot_lock_the_owner_out_of_an_address_they_used_before(client, user):
    owner_address = "198.51.100.7"
    assert login(client, PASSWORD, owner_address).status_code == 200  # the owner, some day before
    answers = [login(client, f"wrong password {i}", FOUR_ADDRESSES[i % 4]) for i in range(40)]
    assert [a.status_code for a in answers].count(429) >= 25
    assert login(client, PASSWORD, "192.0.2.99").status_code == 429  # a new address waits
    assert login(client, PASSWORD, owner_address).status_code == 200  # the owner's does not


def test_guesses_from_a_known_address_have_their_own_backoff(client, user, long_backoff):
    known = "198.51.100.7"
    assert login(client, PASSWORD, known).status_code == 200
    codes = [login(client, f"wrong password {i}", known).status_code for i in range(6)]
    assert codes[:3] == [401, 401, 401] and 429 in codes
    # strangers elsewhere still start from the account's own count
    assert login(client, "wrong password x", "192.0.2.50").status_code == 401


def test_other_accounts_are_not_slowed_by_one_under_attack(client, user, make_user, long_backoff):
    make_user("bob")
    for i in range(8):
        login(client, f"wrong password {i}")
    assert login(client, "wrong password x").status_code == 429
    assert login(client, PASSWORD, email="bob@example.com").status_code == 200


def test_backoff_counters_live_in_redis(app_on_redis, redis_server):
    import redis

    from app.services import users

    users.register("alice", "alice@example.com", PASSWORD)
    client = app_on_redis.test_client()
    codes = [login(client, f"wrong password {i}", FOUR_ADDRESSES[i % 4]).status_code for i in range(10)]
    assert codes[:5] == [401] * 5 and 429 in codes
    keys = [key.decode() for key in redis.Redis.from_url(redis_server.url).keys("*login-*")]
    assert any("login-fails/user:" in key for key in keys) and any("login-gate/user:" in key for key in keys)


@pytest.mark.slow
def test_backoff_holds_across_gunicorn_workers_from_four_source_addresses(postgres, redis_server, tmp_path):
    """The audit's reproduction over real TCP: 3 workers, PostgreSQL and Redis, 4 source addresses."""
    url = postgres.create_database("probeops_login_backoff")
    srv = StartedServer({"DATABASE_URL": url, "RATELIMIT_STORAGE_URI": redis_server.url, "WORKERS": "3",
                         "APP_ENV": "production", "JWT_SECRET_KEY": STRONG_SECRET, "METRICS_TOKEN": "metrics-token",
                         "RATELIMIT_AUTH": "1000 per minute"}, tmp_path).start()
    try:
        def post(path, body, source="127.0.0.1"):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10, source_address=(source, 0))
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = response.status, response.getheader("Retry-After"), response.read()
            conn.close()
            return answer

        credentials = {"username": "victim", "email": "victim@example.com", "password": PASSWORD}
        assert post("/api/users/register", credentials)[0] == 201
        sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
        answers = [post(LOGIN, {"email": "victim@example.com", "password": f"guess number {i}"}, sources[i % 4])
                   for i in range(40)]
        codes = [status for status, _, _ in answers]
        assert codes.count(429) >= 25, codes
        assert all(int(retry) > 0 for status, retry, _ in answers if status == 429)
        status, retry, body = post(LOGIN, {"email": "victim@example.com", "password": PASSWORD}, "127.0.0.5")
        assert status == 429 and int(retry) > 0 and json.loads(body)["code"] == "rate_limited"
    finally:
        srv.stop()


# --- 6. IPv6 clients are keyed by their /64 -------------------------------------------------------

def test_per_ip_limits_key_ipv6_clients_by_their_64(app, client, make_user):
    app.config["RATELIMIT_AUTH"] = "3 per minute"
    same_64 = ["2001:db8:1:2::1", "2001:db8:1:2::dead:beef", "2001:db8:1:2:ffff::7"]
    codes = [login(client, "wrong password", address, email=f"u{i}@example.com").status_code
             for i, address in enumerate(same_64)]
    assert codes == [401, 401, 401]
    assert login(client, "wrong password", "2001:db8:1:2:aaaa::1", email="u9@example.com").status_code == 429
    assert login(client, "wrong password", "2001:db8:1:3::1", email="u9@example.com").status_code == 401


@pytest.mark.parametrize("address,key", [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_client_address_key(address, key):
    from app.auth.rate_key import client_address_key

    assert client_address_key(address) == key


# --- 7. case-variant usernames ---------------------------------------------------------------------

def register(client, username, email=None):
    return client.post("/api/users/register",
                       json={"username": username, "email": email or f"{username}-{id(username)}@example.com",
                             "password": PASSWORD})


def test_parallel_case_variant_registrations_make_one_account(app):
    """The audit: Dupe, dupe, DUPE, dUpe registered in parallel gave four 201s and four rows."""
    for round_number in range(5):
        names = [f"Dupe{round_number}", f"dupe{round_number}", f"DUPE{round_number}", f"dUpe{round_number}"]
        answers = run_parallel([lambda n=n, e=f"r{round_number}-{i}@example.com": register(app.test_client(), n, e)
                                for i, n in enumerate(names)])
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [201, 409, 409, 409], codes
        for answer in answers:
            if answer.status_code == 409:
                assert answer.get_json()["code"] == "conflict"
                assert answer.get_json()["message"].startswith("username")
    assert count_rows("users") == 5


def test_the_database_itself_refuses_case_variant_usernames(app, db_session):
    from app.db.models import User

    for name in ("Dupe", "dupe"):
        db_session.add(User(username=name, email=f"{name}@example.com", password_hash="x"))
    with pytest.raises(IntegrityError):
        db_session.commit()
    db_session.rollback()


def test_login_and_duplicates_ignore_username_case(client, user):
    assert register(client, "ALICE").status_code == 409
    assert login(client, PASSWORD, username="aLiCe").status_code == 200


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/migrate.db"
    return request.getfixturevalue("postgres").create_database(f"probeops_migrate_{tmp_path.name[-12:]}".lower())


def test_migration_0002_refuses_existing_case_duplicates_then_applies(blank_database, caplog, capsys):
    from flask_migrate import upgrade

    from app.extensions import db

    app = build_app(blank_database)
    with app.app_context():
        upgrade(revision="0001")
        insert = sa.text("INSERT INTO users (username, email, password_hash, role, subscription_tier, is_active, "
                         "token_version, probe_job_count, created_at) VALUES "
                         "(:u, :e, 'x', 'user', 'Free', true, 0, 0, CURRENT_TIMESTAMP)")
        with db.engine.begin() as conn:
            for name in ("Dupe", "dupe", "solo"):
                conn.execute(insert, {"u": name, "e": f"{name}@example.com"})
        with pytest.raises(SystemExit):  # flask-migrate logs the migration's error and exits 1
            upgrade()
        assert re.search(r"0002 refused.*'dupe' \(2 accounts\)", caplog.text + capsys.readouterr().err)
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET username = 'dupe-2' WHERE username = 'dupe'"))
        upgrade()
        with db.engine.begin() as conn:
            with pytest.raises(IntegrityError):
                conn.execute(insert, {"u": "SOLO", "e": "solo2@example.com"})
        for engine in db.engines.values():
            engine.dispose()


# --- 8. the last active admin ---------------------------------------------------------------------

def test_an_admin_demoted_meanwhile_cannot_demote_the_last_admin(app, make_user):
    """The audit's interleaving, in order: B authenticated, A demotes B, then B's request demotes A."""
    from app.auth.identity import Caller
    from app.errors import ApiError
    from app.services import users

    a, b = make_user("admin_a", role="admin"), make_user("admin_b", role="admin")
    b_as_authenticated = Caller(b.id, b.username, b.email, True, "admin", b.subscription_tier, b.created_at, 0)
    users.set_role(a, b.id, "user")
    with pytest.raises(ApiError) as refused:
        users.set_role(b_as_authenticated, a.id, "user")
    assert refused.value.status == 409 and "last active admin" in refused.value.message
    with pytest.raises(ApiError) as refused:
        users.set_active(b_as_authenticated, a.id, False)
    assert refused.value.status == 409 and refused.value.message.startswith("is_active")


def active_admins():
    from app.db.models import User
    from app.extensions import db

    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(User)
                             .where(User.role == "admin", User.is_active.is_(True)))


def change(app, headers, target_id, what, body):
    """A call that posts one admin change (role or active) as the holder of ``headers``."""
    return lambda: app.test_client().post(f"/api/admin/users/{target_id}/{what}", json=body,
                                          headers=headers).status_code


@pytest.mark.parametrize("a_does,b_does", [
    (("role", {"role": "user"}), ("role", {"role": "user"})),
    (("active", {"is_active": False}), ("active", {"is_active": False})),
    (("role", {"role": "user"}), ("active", {"is_active": False})),
])
def test_two_admins_demoting_each_other_at_once_leave_one(app, make_user, auth_headers, a_does, b_does):
    """The audit: two admins demoting each other at the same moment left zero admins."""
    from app.db.models import User
    from app.extensions import db

    for round_number in range(4):
        a = make_user(f"adm_a{round_number}", role="admin")
        b = make_user(f"adm_b{round_number}", role="admin")
        db.session.execute(sa.update(User).where(User.id.notin_([a.id, b.id]), User.role == "admin")
                           .values(role="user"))
        db.session.commit()
        assert active_admins() == 2
        codes = run_parallel([change(app, auth_headers(a), b.id, *a_does), change(app, auth_headers(b), a.id, *b_does)])
        assert active_admins() == 1, codes
        # 409: refused by the last-admin check; 401/403: the other change committed before this
        # request was authenticated, so its caller was no longer an active admin.
        assert codes.count(200) == 1 and set(codes) - {200} <= {401, 403, 409}, codes


# --- 10. a wrong, revoked and disabled account's API key look the same ---------------------------

def _bad_keys(client, make_user, auth_headers):
    """Three keys that must not work: wrong, revoked (deactivated key), key of a deactivated account."""
    revoked_owner, disabled_owner, admin = make_user("kr"), make_user("kd"), make_user("ka", role="admin")

    def new_key(owner):
        answer = client.post("/api/apikeys", json={"description": "t"}, headers=auth_headers(owner))
        assert answer.status_code == 201
        return answer.get_json()["api_key"]

    revoked = new_key(revoked_owner)
    assert client.put(f"/api/apikeys/{revoked['id']}", json={"is_active": False},
                      headers=auth_headers(revoked_owner)).status_code == 200
    disabled = new_key(disabled_owner)
    assert client.post(f"/api/admin/users/{disabled_owner.id}/active", json={"is_active": False},
                       headers=auth_headers(admin)).status_code == 200
    good = new_key(make_user("kg"))
    wrong = good["key"][:-6] + ("AAAAAA" if not good["key"].endswith("AAAAAA") else "BBBBBB")
    return {"wrong": wrong, "revoked": revoked["key"], "disabled": disabled["key"]}, good["key"]


def _without_request_id(body):
    return {name: value for name, value in body.items() if name not in ("request_id", "requestId")}


def test_wrong_revoked_and_disabled_keys_get_one_identical_answer(client, make_user, auth_headers):
    bad, good = _bad_keys(client, make_user, auth_headers)
    assert client.get("/api/users/me", headers={"X-API-Key": good}).status_code == 200
    answers = {kind: client.get("/api/users/me", headers={"X-API-Key": key}) for kind, key in bad.items()}
    assert {answer.status_code for answer in answers.values()} == {401}
    bodies = [_without_request_id(answer.get_json()) for answer in answers.values()]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["code"] == "invalid_credentials"
    header_sets = [{name for name in answer.headers.keys() if name.lower() != "x-request-id"}
                   for answer in answers.values()]
    assert header_sets[0] == header_sets[1] == header_sets[2]
    www = [answer.headers.get("WWW-Authenticate") for answer in answers.values()]
    assert www[0] == www[1] == www[2]


def _median_times(client, keys, rounds):
    timings = {kind: [] for kind in keys}
    for _ in range(rounds):
        for kind, key in keys.items():  # interleaved, so a slow moment of the machine hits every kind
            start = time.perf_counter()
            assert client.get("/api/users/me", headers={"X-API-Key": key}).status_code == 401
            timings[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(values) for kind, values in timings.items()}


def test_wrong_revoked_and_disabled_keys_take_similar_time(client, make_user, auth_headers):
    """Medians over dozens of requests within 3x: not a speed test, it catches a bcrypt-vs-nothing gap.

    A busy machine can skew one measurement; a real gap skews every one, so up to three are taken.
    """
    bad, _ = _bad_keys(client, make_user, auth_headers)
    measured = []
    for _ in range(3):
        medians = _median_times(client, bad, 40)
        measured.append(medians)
        if max(medians.values()) <= 3 * min(medians.values()):
            break
    else:
        pytest.fail(f"one kind of bad key answers at a different speed: {measured}")


# --- 11. passwords are NFKC-normalised, and never only whitespace --------------------------------

NFC_PASSWORD = unicodedata.normalize("NFC", "café crème brûlée à la carte")
NFD_PASSWORD = unicodedata.normalize("NFD", NFC_PASSWORD)


@pytest.mark.parametrize("registered,typed", [(NFC_PASSWORD, NFD_PASSWORD), (NFD_PASSWORD, NFC_PASSWORD),
                                              ("ｐａｓｓｗｏｒｄ　ｆｕｌｌｗｉｄｔｈ", "password fullwidth")])
def test_a_password_logs_in_in_any_unicode_form(client, registered, typed):
    assert registered != typed
    answer = client.post("/api/users/register", json={"username": "nfkc", "email": "nfkc@example.com",
                                                      "password": registered})
    assert answer.status_code == 201
    assert login(client, typed, email="nfkc@example.com").status_code == 200
    assert login(client, registered, email="nfkc@example.com").status_code == 200


@pytest.mark.parametrize("password", [" " * 20, "\t\n" * 8 + " " * 4, "\u3000" * 14, "\u00a0" * 14])
def test_whitespace_only_passwords_are_refused_naming_password(client, password):
    answer = client.post("/api/users/register", json={"username": "blank", "email": "blank@example.com",
                                                      "password": password})
    assert answer.status_code == 400
    body = answer.get_json()
    assert "password" in body["message"] and "whitespace" in body["message"]
    assert body["code"] == "validation_error" and "password" in body.get("fields", {"password": 1})
    assert count_rows("users") == 0


def test_admin_creation_refuses_a_whitespace_password_and_normalises(app, db_session):
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["create-admin", "--username", "ops", "--email", "ops@example.com",
                                  "--password", " " * 16])
    assert refused.exit_code != 0 and "whitespace" in refused.output
    created = runner.invoke(args=["create-admin", "--username", "ops", "--email", "ops@example.com",
                                  "--password", NFD_PASSWORD])
    assert created.exit_code == 0, created.output
    assert login(app.test_client(), NFC_PASSWORD, username="ops").status_code == 200


def test_hashes_made_before_normalisation_keep_working(app, client, db_session):
    """ASCII hashes are unchanged; a non-NFKC password hashed as typed still logs in, and is re-hashed."""
    import base64
    import hashlib

    import bcrypt

    from app.db.models import User
    from app.services import users

    def old_hash(password):  # the hashing code before this change: no normalisation
        digest = base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())
        return bcrypt.hashpw(digest, bcrypt.gensalt(4)).decode("ascii")

    ascii_user = users.register("asciiuser", "ascii@example.com", PASSWORD)
    legacy_user = users.register("legacyuser", "legacy@example.com", PASSWORD)
    db_session.execute(sa.update(User).where(User.id == ascii_user.id).values(password_hash=old_hash(PASSWORD)))
    db_session.execute(sa.update(User).where(User.id == legacy_user.id).values(password_hash=old_hash(NFD_PASSWORD)))
    db_session.commit()
    assert login(client, PASSWORD, email="ascii@example.com").status_code == 200
    assert login(client, NFD_PASSWORD, email="legacy@example.com").status_code == 200
    db_session.expire_all()
    # re-hashed in NFKC form: now the NFC spelling works too
    assert login(client, NFC_PASSWORD, email="legacy@example.com").status_code == 200
