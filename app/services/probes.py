"""Run a synchronous probe for a user: validate the request, then reserve, dispatch and wait.

The API refuses at once what it can judge without resolving: bad syntax (400 naming the field),
literal special-purpose addresses and special-use names (403). Names are resolved by the
executor where the probe runs (app.probes.execute), which applies its own guard.
"""
import functools

from flask import current_app

from app.errors import ApiError
from app.probes import targets
from app.probes.registry import PROBE_TYPES
from app.services.probe_jobs import run_probe


@functools.lru_cache(maxsize=8)
def _parse_allowed(spec):
    return targets.parse_networks(spec)


def allowed_networks():
    """PROBE_ALLOWED_NETWORKS parsed once per distinct value."""
    return _parse_allowed(current_app.config["PROBE_ALLOWED_NETWORKS"] or "")


@functools.lru_cache(maxsize=8)
def _parse_domains(spec):
    return targets.parse_domains(spec)


def allowed_domains():
    """PROBE_ALLOWED_DOMAINS parsed once per distinct value."""
    spec = current_app.config.get("PROBE_ALLOWED_DOMAINS") or ""
    return _parse_domains(spec if isinstance(spec, str) else ",".join(spec))


def _invalid(field, exc):
    """400 validation_error naming ``field`` (checked before any job is reserved)."""
    return ApiError(400, f"{field}: {exc}", fields={field: [str(exc)]})


def _refused(field, exc):
    return ApiError(403, f"{field}: {exc}", code="target_refused")


def check_host(host, field="host"):
    """A literal address is checked now; a name's syntax and special-use status too (it resolves later)."""
    try:
        address = targets.parse_address(host)
        if address is not None:
            targets.check_address(address, allowed_networks())
            return str(address)
        return targets.validate_hostname(host, allowed_domains())
    except targets.TargetError as exc:
        raise _invalid(field, exc) from exc
    except targets.TargetRefused as exc:
        raise _refused(field, exc) from exc


def query_name(domain, field="domain"):
    """``(name, address)`` for a DNS/WHOIS query, validated and guarded before any job is reserved.

    Any valid query name ("com", "_sip._tcp.x") or IP address (``address`` is then the parsed
    address).  Malformed -> 400; a special-purpose address, a reverse name inside a special-purpose
    range or a special-use domain name (not allowed by PROBE_ALLOWED_NETWORKS / _DOMAINS) -> 403:
    private names and reverse zones stay private like the hosts.
    """
    try:
        address = targets.parse_address(domain)
        name = str(address) if address is not None else targets.normalize_domain(domain)
    except targets.TargetError as exc:
        raise _invalid(field, exc) from exc
    try:
        if address is not None:
            targets.check_address(address, allowed_networks())
        else:
            targets.check_query_name(name, allowed_networks=allowed_networks(), allowed_domains=allowed_domains())
    except targets.TargetRefused as exc:
        raise _refused(field, exc) from exc
    return name, address


def checked_nameserver(text):
    """The nameserver as a canonical IP (no scope id), refused like a probe target when special."""
    try:
        address = targets.parse_address(text)
    except targets.TargetError as exc:
        raise _invalid("nameserver", exc) from exc
    if address is None:
        raise _invalid("nameserver", "must be an IP address")
    try:
        targets.check_address(address, allowed_networks())
    except targets.TargetRefused as exc:
        raise _refused("nameserver", exc) from exc
    return str(address)


def check_request(probe_type, target, options, field=None):
    """Validate a probe's target and options the way the API does; returns the options to run.

    ``field`` names the target in errors (``host``/``domain`` by default, ``target`` for measurements).
    """
    probe = PROBE_TYPES[probe_type]
    field = field or probe.target_field
    options = dict(options)
    if probe.target_field == "host":
        check_host(target, field)
        return options
    name, address = query_name(target, field)
    if probe_type == "whois" and name == ".":
        raise _invalid(field, "the root is not a WHOIS query: send a domain name or an IP address")
    if probe_type == "dns":
        if address is not None:
            options["record_type"] = "PTR"  # an address is a reverse (PTR) lookup
        if options.get("nameserver") is not None:
            options["nameserver"] = checked_nameserver(options["nameserver"])
        else:
            options.pop("nameserver", None)
    return options


def ping(user, host, count):
    options = check_request("ping", host, {"count": count})
    return run_probe(user, "ping", host, options)


def traceroute(user, host, max_hops):
    options = check_request("traceroute", host, {"max_hops": max_hops})
    return run_probe(user, "traceroute", host, options)


def dns(user, domain, record_type, nameserver):
    options = check_request("dns", domain, {"record_type": record_type, "nameserver": nameserver})
    return run_probe(user, "dns", domain, options, options.get("nameserver"))


def whois(user, domain):
    check_request("whois", domain, {})
    return run_probe(user, "whois", domain, {})
