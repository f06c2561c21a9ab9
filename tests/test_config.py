"""Configuration: production refuses unsafe settings; development generates one shared secret."""
import base64
import os
import re
import secrets
import threading
from pathlib import Path

import pytest

from app import create_app
from app.config import ConfigError, check_production, normalize_database_url
from app.secret_strength import MIN_BASE64_CHARS, MIN_ESTIMATED_BITS, MIN_HEX_CHARS, estimated_bits

ROOT = Path(__file__).resolve().parents[1]
STRONG = "9f2c4e7a1b8d3f6052c9e1a7b4d8f30e6a2c5b9d1e7f4a08c3b6d2e9f5a1c7b4"
GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"


def refusal(secret):
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY") as refused:
        check_production({"JWT_SECRET_KEY": secret, "CORS_ORIGINS": ["https://app.example.com"]})
    return str(refused.value)


@pytest.mark.parametrize("secret", [None, "", "short-secret", "change-me", "x" * 64,
                                    "REPLACE_ME_change_this_to_a_long_random_secret_value",
                                    "your-secret-key-here-xxxxxxxxxxxxxxxxxxxxxxx",
                                    "0123456789012345678901234567890123"])
def test_production_refuses_weak_secrets(secret):
    refusal(secret)


# The audit's two (accepted before), and hand-made values in the accepted alphabets and lengths.
WEAK_BUT_LONG = [
    "abcdefghijklmnopqrstuvwxyz012345",
    "ProbeOpsProductionJWTKey2024!!!!",
    "abcdefghijklmnopqrstuvwxyz012345" * 2,
    "0123456789abcdef" * 4,
    "deadbeef" * 8,
    "a1" * 32,
    "fedcba9876543210" * 4,
    "ProbeOpsProductionJWTKey2024ProbeOpsProductionJWTKey2024xx",
    "CorrectHorseBatteryStapleCorrectHorseBatteryStaple",
    "ThisIsMyVerySecretProductionKeyForProbeOpsPleaseDoNotShare2024",
    "MyCompanyJwtSigningKeyUsedInProductionSince2019abc",
    "change-me-to-a-random-64-hex-string-from-secrets-token-hex-32",
    "CHANGE_ME_generate_with__python3_-c_import_secrets_print_secrets.token_hex_32",
]


@pytest.mark.parametrize("secret", WEAK_BUT_LONG)
def test_production_refuses_hand_made_secrets_and_says_how_to_generate_one(secret):
    assert GENERATE in refusal(secret)


def test_the_audits_secrets_are_refused_for_the_right_reason():
    assert "32 base64 characters; at least 43" in refusal("abcdefghijklmnopqrstuvwxyz012345")
    assert "holds other characters" in refusal("ProbeOpsProductionJWTKey2024!!!!")
    assert "looks hand-made" in refusal("abcdefghijklmnopqrstuvwxyz012345" * 2)


@pytest.mark.parametrize("make", [lambda: secrets.token_hex(32), lambda: secrets.token_hex(32).upper(),
                                  lambda: secrets.token_urlsafe(32), lambda: secrets.token_urlsafe(48),
                                  lambda: base64.b64encode(os.urandom(32)).decode(),
                                  lambda: base64.b64encode(os.urandom(48)).decode()],
                         ids=["token_hex32", "HEX32", "token_urlsafe32", "token_urlsafe48", "base64_32", "base64_48"])
def test_production_accepts_what_the_generators_make(make):
    for _ in range(300):
        secret = make()
        check_production({"JWT_SECRET_KEY": secret, "CORS_ORIGINS": ["https://app.example.com"],
                          "METRICS_TOKEN": "metrics-token"})


def test_the_rule_in_the_docs_is_the_rule_in_the_code():
    """deployment.md, docs/configuration.md and both templates state the same numbers and command."""
    for path in ("deployment.md", "docs/configuration.md", ".env.template", ".env.backend.template"):
        text = (ROOT / path).read_text()
        assert "secrets.token_hex(32)" in text, path
        assert "token_urlsafe(48)" not in text, f"{path}: still shows the old generator"
        if path.endswith(".md"):
            rule = re.search(r"at\s+least\s+(\d+)\s+hex\s+characters.*?at\s+least\s+(\d+)\s+base64.*?"
                             r"at\s+least\s+(\d+)\s+bits", text, re.S)
            assert rule, f"{path} does not state the secret rule"
            assert tuple(map(int, rule.groups())) == (MIN_HEX_CHARS, MIN_BASE64_CHARS, MIN_ESTIMATED_BITS), path


def test_strength_estimate_discounts_runs_repeats_and_words():
    random_hex = "9f2c4e7a1b8d3f6052c9e1a7b4d8f30e6a2c5b9d1e7f4a08c3b6d2e9f5a1c7b4"
    assert estimated_bits(random_hex) == 256
    assert estimated_bits("0" * 64) < 80  # runs
    assert estimated_bits("9f2c4e7a" * 8) < 100  # repeats
    assert estimated_bits("passwordsecretproductionadminwelcomemonkeydragonmaster") < 100  # words


def test_production_refuses_open_cors_with_credentials():
    with pytest.raises(ConfigError, match="CORS"):
        check_production({"JWT_SECRET_KEY": STRONG, "CORS_ORIGINS": ["*"], "CORS_ALLOW_CREDENTIALS": True})


def test_production_starts_with_a_strong_secret(tmp_path):
    app = create_app({"APP_ENV": "production", "JWT_SECRET_KEY": STRONG, "METRICS_TOKEN": "metrics-token",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.db"})
    assert app.config["JWT_SECRET_KEY"] == STRONG


def test_production_app_refuses_to_build_without_secret(tmp_path):
    with pytest.raises(ConfigError):
        create_app({"APP_ENV": "production", "JWT_SECRET_KEY": None,
                    "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.db"})


def test_unknown_app_env_is_refused():
    with pytest.raises(ConfigError, match="APP_ENV"):
        create_app({"APP_ENV": "staging"})


def test_development_secret_is_generated_once_and_shared(tmp_path, monkeypatch):
    from app.secrets_store import load_or_create_secret

    secrets = []
    threads = [threading.Thread(target=lambda: secrets.append(load_or_create_secret(str(tmp_path))))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(secrets)) == 1 and len(secrets[0]) >= 48
    assert load_or_create_secret(str(tmp_path)) == secrets[0]
    assert oct((tmp_path / "jwt_secret").stat().st_mode)[-3:] == "600"
    assert [p.name for p in tmp_path.iterdir()] == ["jwt_secret"]


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
    ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
    ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_database_urls_use_psycopg2(url, expected):
    assert normalize_database_url(url) == expected


@pytest.mark.parametrize("overrides,name", [({"PING_MAX_COUNT": 50}, "PING_MAX_COUNT"),
                                            ({"TRACEROUTE_TOTAL_TIMEOUT": 0}, "TRACEROUTE_TOTAL_TIMEOUT"),
                                            ({"PROBE_ALLOWED_NETWORKS": "10.0.0.0/33"}, "PROBE_ALLOWED_NETWORKS")])
def test_probe_settings_outside_engine_bounds_are_refused_at_start(tmp_path, overrides, name):
    with pytest.raises(ConfigError, match=name):
        create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/t.db", **overrides})


def test_malformed_dns_nameservers_are_refused_at_start(tmp_path):
    with pytest.raises(ConfigError, match="DNS_NAMESERVERS"):
        create_app({"APP_ENV": "testing", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/t.db",
                    "DNS_NAMESERVERS": ["dns.google"]})


@pytest.mark.parametrize("name, value, says", [
    ("CENTRAL_WORKER_CONCURRENCY", "eight", "CENTRAL_WORKER_CONCURRENCY must be an integer, not 'eight'"),
    ("BROKER_TIMEOUT", "1s", "BROKER_TIMEOUT must be a number, not '1s'"),
    ("QUOTA_FREE_DAY", "lots", "QUOTA_FREE_DAY must be an integer, not 'lots'"),
])
def test_a_setting_that_is_not_a_number_is_refused_by_name(name, value, says):
    import subprocess
    import sys

    env = {**os.environ, name: value}
    p = subprocess.run([sys.executable, "-c", "import app.config"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and f"app.config.ConfigError: {says}" in p.stderr, p.stderr
