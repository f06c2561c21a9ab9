"""What one probe run needs, as data: the spec the API sends and the policy of the place that runs it.

No Flask: the API builds these from its config, an agent from its environment.
"""
from dataclasses import dataclass, field

# The API's engine timing settings a spec carries (config key -> bounds key).
BOUND_KEYS = {
    "PING_INTERVAL": "ping_interval",
    "PING_TIMEOUT": "ping_timeout",
    "TRACEROUTE_PROBES_PER_HOP": "traceroute_probes_per_hop",
    "TRACEROUTE_HOP_TIMEOUT": "traceroute_hop_timeout",
    "TRACEROUTE_TOTAL_TIMEOUT": "traceroute_total_timeout",
    "DNS_TIMEOUT": "dns_timeout",
    "WHOIS_TIMEOUT": "whois_timeout",
    "WHOIS_MAX_BYTES": "whois_max_bytes",
}


def bounds_from_config(config):
    """The engine timing settings of a Flask config (or any mapping with the same keys)."""
    return {key: config[name] for name, key in BOUND_KEYS.items()}


@dataclass(frozen=True)
class ProbeSpec:
    """One probe to run: type, target text, validated options, engine bounds, deadline (epoch s)."""

    type: str
    target: str
    options: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    deadline: float = 0.0

    def to_dict(self):
        """A JSON-serialisable dict. Built by hand: ``dataclasses.asdict`` deep-copies every value,
        and a measurement's POST builds one per location."""
        return {"type": self.type, "target": self.target, "options": dict(self.options),
                "bounds": dict(self.bounds), "deadline": self.deadline}

    @classmethod
    def from_dict(cls, d):
        """The spec back from ``to_dict()`` output (unknown keys ignored)."""
        return cls(type=str(d["type"]), target=str(d["target"]), options=dict(d.get("options") or {}),
                   bounds=dict(d.get("bounds") or {}), deadline=float(d.get("deadline") or 0.0))


def _text(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ",".join(str(v) for v in value)


def _tuple(value):
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class LocalPolicy:
    """What the place that runs the probe allows and uses."""

    allowed_networks: str = ""
    allowed_domains: str = ""
    nameservers: tuple = ()
    whois_root_server: str = "whois.iana.org"
    rdap_bootstrap_url: str = ""

    @classmethod
    def from_config(cls, mapping):
        """From a Flask config or a dict built from ``os.environ`` (the usual setting names)."""
        return cls(allowed_networks=_text(mapping.get("PROBE_ALLOWED_NETWORKS")),
                   allowed_domains=_text(mapping.get("PROBE_ALLOWED_DOMAINS")),
                   nameservers=_tuple(mapping.get("DNS_NAMESERVERS")),
                   whois_root_server=mapping.get("WHOIS_ROOT_SERVER") or "whois.iana.org",
                   rdap_bootstrap_url=mapping.get("RDAP_BOOTSTRAP_URL") or "")
