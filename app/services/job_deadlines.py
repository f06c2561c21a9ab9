"""How long a probe job may run: its engine's bound from the settings, plus a margin."""
from datetime import timedelta

from app.probes import limits as L

# WHOIS resolves each server it is referred to (root, registry, registrar, RDAP bootstrap and
# redirects) through the target guard, outside the engine's own deadline.
_WHOIS_GUARD_LOOKUPS = L.WHOIS_MAX_HOPS_DEFAULT + L.RDAP_MAX_REDIRECTS + 1


def probe_bound_seconds(probe_type, parameters, config):
    """The longest the engine can take for this probe with these settings, in seconds."""
    if probe_type == "ping":
        return parameters.get("count", L.PING_COUNT_MAX) * config["PING_INTERVAL"] + config["PING_TIMEOUT"]
    if probe_type == "traceroute":
        return config["TRACEROUTE_TOTAL_TIMEOUT"]
    if probe_type == "dns":
        return 2 * config["DNS_TIMEOUT"]  # UDP, then the TCP retry of a truncated answer
    if probe_type == "whois":
        return config["WHOIS_TIMEOUT"] + _WHOIS_GUARD_LOOKUPS * config["DNS_TIMEOUT"]
    raise ValueError(f"no bound known for probe type {probe_type!r}")


def job_deadline(probe_type, parameters, config, started_at):
    """When a job started at ``started_at`` is overdue."""
    seconds = probe_bound_seconds(probe_type, parameters, config) + config["PROBE_DEADLINE_MARGIN_SECONDS"]
    return started_at + timedelta(seconds=seconds)
