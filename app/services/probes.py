"""Run a probe for a user: guard the target, reserve the job, call the engine, store it.

The engines in ``app.probes`` know nothing of Flask; this module hands them the settings
from the app config and turns their exceptions into the contract's answers.
"""
import functools

from flask import current_app

from app.errors import ApiError
from app.probes import dns as dns_engine
from app.probes import ping as ping_engine
from app.probes import targets
from app.probes import traceroute as traceroute_engine
from app.probes import whois as whois_engine
from app.probes.results import ProbeResult
from app.services.probe_jobs import run_probe


@functools.lru_cache(maxsize=8)
def _parse_allowed(spec):
    return targets.parse_networks(spec)


def allowed_networks():
    """PROBE_ALLOWED_NETWORKS parsed once per distinct value."""
    return _parse_allowed(current_app.config["PROBE_ALLOWED_NETWORKS"] or "")


def _nameservers():
    return current_app.config["DNS_NAMESERVERS"] or None


def guard(host, field="host"):
    """Resolve ``host`` once and check every address; returns a Target or raises.

    Bad syntax -> 400 naming the field; special-purpose address -> 403. A name that does not
    resolve is returned as None: the probe "ran" and failed, like ``ping`` on an unknown host.
    """
    try:
        return targets.resolve_target(host, allowed_networks=allowed_networks(), nameservers=_nameservers(),
                                      timeout=current_app.config["DNS_TIMEOUT"])
    except targets.TargetError as exc:
        raise ApiError(400, f"{field}: {exc}") from exc
    except targets.TargetRefused as exc:
        raise ApiError(403, f"{field}: {exc}", code="target_refused") from exc


def address_guard(host):
    """For engines that connect onwards (WHOIS referrals): the checked address for ``host``."""
    return targets.resolve_target(host, allowed_networks=allowed_networks(), nameservers=_nameservers(),
                                  timeout=current_app.config["DNS_TIMEOUT"]).address


def _resolve_or_fail(host):
    """``(target, None)`` or ``(None, failed ProbeResult)`` when the name does not resolve."""
    try:
        return guard(host), None
    except targets.TargetUnresolvable as exc:
        return None, ProbeResult(False, f"{host}: {exc}", {"error": str(exc)})


def ping(user, host, count):
    cfg = current_app.config
    target, failure = _resolve_or_fail(host)
    call = (lambda: failure) if failure else functools.partial(
        ping_engine.ping, target, count=count, interval=cfg["PING_INTERVAL"], timeout=cfg["PING_TIMEOUT"])
    return run_probe(user, "ping", host, {"count": count}, call, target and target.address)


def traceroute(user, host, max_hops):
    cfg = current_app.config
    target, failure = _resolve_or_fail(host)
    call = (lambda: failure) if failure else functools.partial(
        traceroute_engine.traceroute, target, max_hops=max_hops, probes_per_hop=cfg["TRACEROUTE_PROBES_PER_HOP"],
        timeout=cfg["TRACEROUTE_HOP_TIMEOUT"], total_timeout=cfg["TRACEROUTE_TOTAL_TIMEOUT"])
    return run_probe(user, "traceroute", host, {"max_hops": max_hops}, call, target and target.address)


def dns(user, domain, record_type, nameserver):
    name, address = _query_name(domain)
    if address is not None:
        # An address is a reverse (PTR) lookup; private reverse names stay private like the hosts.
        _check_address(address, "domain")
        record_type = "PTR"
    if nameserver is not None:
        nameserver = _checked_nameserver(nameserver)
    servers = [nameserver] if nameserver else _nameservers()
    parameters = {"record_type": record_type, **({"nameserver": nameserver} if nameserver else {})}
    call = functools.partial(dns_engine.dns_lookup, name, record_type=record_type, nameservers=servers,
                             timeout=current_app.config["DNS_TIMEOUT"])
    return run_probe(user, "dns", domain, parameters, call, nameserver)


def _query_name(domain):
    """``(name, address)``: DNS and WHOIS may ask about any valid query name ("com", "_sip._tcp.x")
    or an IP address (address is then the parsed address)."""
    try:
        address = targets.parse_address(domain)
        return (str(address), address) if address is not None else (targets.normalize_domain(domain), None)
    except targets.TargetError as exc:
        raise ApiError(400, f"domain: {exc}") from exc


def _check_address(address, field):
    try:
        targets.check_address(address, allowed_networks())
    except targets.TargetRefused as exc:
        raise ApiError(403, f"{field}: {exc}", code="target_refused") from exc


def _checked_nameserver(text):
    """The nameserver as a canonical IP (no scope id), refused like a probe target when special."""
    try:
        address = targets.parse_address(text)
    except targets.TargetError as exc:
        raise ApiError(400, f"nameserver: {exc}") from exc
    if address is None:
        raise ApiError(400, "nameserver: must be an IP address")
    _check_address(address, "nameserver")
    return str(address)


def whois(user, domain):
    query, _ = _query_name(domain)
    cfg = current_app.config
    call = functools.partial(whois_engine.whois_lookup, query, root_server=cfg["WHOIS_ROOT_SERVER"], guard=address_guard,
                             rdap_bootstrap_url=cfg["RDAP_BOOTSTRAP_URL"] or None,
                             timeout=cfg["WHOIS_TIMEOUT"], max_bytes=cfg["WHOIS_MAX_BYTES"])
    return run_probe(user, "whois", domain, {}, call)
