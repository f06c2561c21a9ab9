"""Configuration: production refuses unsafe settings; development generates one shared secret."""
import threading

import pytest

from app import create_app
from app.config import ConfigError, check_production, normalize_database_url

STRONG = "k3Jx9-QvT2mR8zLw4NpY7cHs1BdF6gUe0aWoZiXt"


@pytest.mark.parametrize("secret", [None, "", "short-secret", "change-me", "x" * 64,
                                    "REPLACE_ME_change_this_to_a_long_random_secret_value",
                                    "your-secret-key-here-xxxxxxxxxxxxxxxxxxxxxxx", "0123456789012345678901234567890123"])
def test_production_refuses_weak_secrets(secret):
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        check_production({"JWT_SECRET_KEY": secret, "CORS_ORIGINS": ["https://app.example.com"]})


def test_production_refuses_open_cors_with_credentials():
    with pytest.raises(ConfigError, match="CORS"):
        check_production({"JWT_SECRET_KEY": STRONG, "CORS_ORIGINS": ["*"], "CORS_ALLOW_CREDENTIALS": True})


def test_production_starts_with_a_strong_secret(tmp_path):
    app = create_app({"APP_ENV": "production", "JWT_SECRET_KEY": STRONG,
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
