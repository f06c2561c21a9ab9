"""Every probe type, declared once: its target field, options with defaults and bounds, engine, time bound.

No Flask. The synchronous endpoints, the measurements and the executor read ``PROBE_TYPES``.
An option's maximum may name a config key (e.g. ``PING_MAX_COUNT``), looked up in the config
passed to ``validate_options``.
"""
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.probes import dns as dns_engine
from app.probes import limits as L
from app.probes import ping as ping_engine
from app.probes import traceroute as traceroute_engine
from app.probes import whois as whois_engine

RECORD_TYPES = L.DNS_RECORD_TYPES

# WHOIS resolves each server it is referred to (root, registry, registrar, RDAP bootstrap and
# redirects) through the target guard, outside the engine's own deadline.
_WHOIS_GUARD_LOOKUPS = L.WHOIS_MAX_HOPS_DEFAULT + L.RDAP_MAX_REDIRECTS + 1


class OptionError(ValueError):
    """An option out of its bounds; ``field`` names it."""

    def __init__(self, field_name, message):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Option:
    """One option: integer within [minimum, maximum] or one of ``choices``, or an optional text."""

    name: str
    default: Any
    kind: str = "int"              # "int", "choice" or "text"
    minimum: int | None = None
    maximum: int | str | None = None   # a number, or the config key holding it
    choices: tuple = ()
    max_length: int = 255

    def limit(self, config):
        """The maximum in force: the number, or the config value it names."""
        if isinstance(self.maximum, str):
            return int(config[self.maximum])
        return self.maximum

    def validate(self, value, config):
        """The checked value; raises OptionError naming the option."""
        if value is None:
            if self.kind == "text":
                return None
            raise OptionError(self.name, "may not be null")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionError(self.name, "Not a valid integer.")
            high = self.limit(config)
            if value < self.minimum or value > high:
                raise OptionError(self.name, f"Must be greater than or equal to {self.minimum} "
                                             f"and less than or equal to {high}.")
            return value
        if not isinstance(value, str):
            raise OptionError(self.name, "Not a valid string.")
        if self.kind == "choice":
            upper = value.strip().upper()
            if upper not in self.choices:
                raise OptionError(self.name, f"Must be one of: {', '.join(self.choices)}.")
            return upper
        text = value.strip()
        if len(text) > self.max_length:
            raise OptionError(self.name, f"Longer than maximum length {self.max_length}.")
        return text or None


@dataclass(frozen=True)
class ProbeType:
    """One probe type: how its target and options look, how it runs, how long it may take."""

    name: str
    target_field: str                    # "host" (resolved) or "domain" (a query name)
    options: tuple = field(default_factory=tuple)
    engine: Callable = None              # engine(prepared_target, options, bounds, policy_tools) -> ProbeResult
    bound: Callable = None               # bound(options, bounds) -> seconds

    def defaults(self):
        """Every option at its default."""
        return {o.name: o.default for o in self.options}

    def validate_options(self, options, config):
        """The options with defaults filled in; raises OptionError (unknown or out of bounds)."""
        options = options or {}
        if not isinstance(options, dict):
            raise OptionError("options", "Not a valid mapping type.")
        known = {o.name: o for o in self.options}
        for name in options:
            if name not in known:
                raise OptionError(name, "Unknown field.")
        return {o.name: o.validate(options.get(o.name, o.default), config) for o in self.options}

    def bound_seconds(self, options, bounds):
        """The longest the engine can take for these options and engine bounds, in seconds."""
        return float(self.bound({**self.defaults(), **(options or {})}, bounds))


def _ping(target, options, bounds, tools):
    return ping_engine.ping(target, count=options["count"], interval=bounds["ping_interval"],
                            timeout=bounds["ping_timeout"])


def _traceroute(target, options, bounds, tools):
    return traceroute_engine.traceroute(
        target, max_hops=options["max_hops"], probes_per_hop=bounds["traceroute_probes_per_hop"],
        timeout=bounds["traceroute_hop_timeout"], total_timeout=bounds["traceroute_total_timeout"])


def _dns(name, options, bounds, tools):
    nameserver = options.get("nameserver")
    servers = [nameserver] if nameserver else (list(tools.nameservers) or None)
    return dns_engine.dns_lookup(name, record_type=options["record_type"], nameservers=servers,
                                 timeout=bounds["dns_timeout"])


def _whois(query, options, bounds, tools):
    return whois_engine.whois_lookup(query, root_server=tools.whois_root_server, guard=tools.address_guard,
                                     rdap_bootstrap_url=tools.rdap_bootstrap_url or None,
                                     timeout=bounds["whois_timeout"], max_bytes=bounds["whois_max_bytes"])


PROBE_TYPES: dict[str, ProbeType] = {
    "ping": ProbeType(
        "ping", "host", (Option("count", 4, "int", 1, "PING_MAX_COUNT"),), _ping,
        lambda o, b: o["count"] * b["ping_interval"] + b["ping_timeout"]),
    "traceroute": ProbeType(
        "traceroute", "host", (Option("max_hops", 30, "int", 1, "TRACEROUTE_MAX_HOPS"),), _traceroute,
        lambda o, b: b["traceroute_total_timeout"]),
    "dns": ProbeType(
        "dns", "domain", (Option("record_type", "A", "choice", choices=RECORD_TYPES),
                          Option("nameserver", None, "text", max_length=64)), _dns,
        lambda o, b: 2 * b["dns_timeout"]),  # UDP, then the TCP retry of a truncated answer
    "whois": ProbeType(
        "whois", "domain", (), _whois,
        lambda o, b: b["whois_timeout"] + _WHOIS_GUARD_LOOKUPS * b["dns_timeout"]),
}


@functools.cache
def type_names():
    """The registered probe type names, in declaration order."""
    return tuple(PROBE_TYPES)
