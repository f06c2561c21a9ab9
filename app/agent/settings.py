"""The agent's settings, read from os.environ only: the broker URL, its LOCATION, its probe policy."""
import os
import socket
from dataclasses import dataclass, field

from app.agent.protocol import AGENT_NAME_PATTERN
from app.utils.cpu_priority import NICE_MAX, POLICIES


class AgentConfigError(ValueError):
    """A setting the agent cannot start with."""


@dataclass(frozen=True)
class AgentSettings:
    """One agent: where it is, how it reaches the broker, what it may probe."""

    name: str
    broker_url: str
    country: str | None = None
    city: str | None = None
    asn: int | None = None
    network: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    tags: tuple = ()
    offline_seconds: float = 30.0
    concurrency: int = 16
    nice: int = 0
    cpu_policy: str = "normal"
    policy_config: dict = field(default_factory=dict)

    @property
    def heartbeat_seconds(self):
        """Three heartbeats per offline window: one lost write does not take the agent offline."""
        return max(0.5, self.offline_seconds / 3)

    def location(self, version, last_seen):
        """The contract's LOCATION for this agent."""
        return {"name": self.name, "country": self.country, "city": self.city, "asn": self.asn,
                "network": self.network, "latitude": self.latitude, "longitude": self.longitude,
                "tags": list(self.tags), "version": version, "last_seen": last_seen}


def _text(raw):
    value = (raw or "").strip()
    return value or None


def _number(key, raw, kind, default=None, minimum=None, maximum=None):
    raw = _text(raw)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise AgentConfigError(f"{key} must be a {kind.__name__}, not {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise AgentConfigError(f"{key} must be between {minimum} and {maximum}, not {raw!r}")
    return value


def _choice(key, raw, choices):
    value = (_text(raw) or choices[0]).lower()
    if value not in choices:
        raise AgentConfigError(f"{key} must be one of {', '.join(choices)}, not {raw!r}")
    return value


def from_environ(environ=None):
    """Read and check the agent's settings; raises AgentConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    broker_url = _text(environ.get("CELERY_BROKER_URL"))
    if not broker_url:
        raise AgentConfigError("CELERY_BROKER_URL is required (redis://... or rediss://...)")
    name = _text(environ.get("AGENT_NAME")) or socket.gethostname().split(".")[0]
    if not AGENT_NAME_PATTERN.match(name):
        raise AgentConfigError(f"AGENT_NAME must be letters, digits, '.', '_' or '-' (at most 63), not {name!r}")
    country = _text(environ.get("AGENT_COUNTRY"))
    if country is not None:
        if len(country) != 2 or not country.isalpha():
            raise AgentConfigError(f"AGENT_COUNTRY must be an ISO 3166-1 alpha-2 code, not {country!r}")
        country = country.upper()
    tags = tuple(t.strip() for t in (environ.get("AGENT_TAGS") or "").split(",") if t.strip())
    return AgentSettings(
        name=name, broker_url=broker_url, country=country, city=_text(environ.get("AGENT_CITY")),
        asn=_number("AGENT_ASN", environ.get("AGENT_ASN"), int, minimum=0, maximum=4294967295),
        network=_text(environ.get("AGENT_NETWORK")),
        latitude=_number("AGENT_LATITUDE", environ.get("AGENT_LATITUDE"), float, minimum=-90, maximum=90),
        longitude=_number("AGENT_LONGITUDE", environ.get("AGENT_LONGITUDE"), float, minimum=-180, maximum=180),
        tags=tags,
        offline_seconds=_number("AGENT_OFFLINE_SECONDS", environ.get("AGENT_OFFLINE_SECONDS"), float, 30.0,
                                minimum=1, maximum=3600),
        concurrency=_number("AGENT_CONCURRENCY", environ.get("AGENT_CONCURRENCY"), int, 16, minimum=1, maximum=512),
        nice=_number("AGENT_NICE", environ.get("AGENT_NICE"), int, 0, minimum=0, maximum=NICE_MAX),
        cpu_policy=_choice("AGENT_CPU_POLICY", environ.get("AGENT_CPU_POLICY"), POLICIES),
        policy_config=policy_config(environ),
    )


def policy_config(environ):
    """The policy keys shaped as the API's Flask config has them (same defaults, lists split)."""
    return {"PROBE_ALLOWED_NETWORKS": environ.get("PROBE_ALLOWED_NETWORKS", ""),
            "PROBE_ALLOWED_DOMAINS": environ.get("PROBE_ALLOWED_DOMAINS", ""),
            "DNS_NAMESERVERS": [s.strip() for s in (environ.get("DNS_NAMESERVERS") or "").split(",") if s.strip()],
            "WHOIS_ROOT_SERVER": environ.get("WHOIS_ROOT_SERVER") or "whois.iana.org",
            "RDAP_BOOTSTRAP_URL": environ.get("RDAP_BOOTSTRAP_URL", "")}
