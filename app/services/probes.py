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


def _nameservers():
    return current_app.config["DNS_NAMESERVERS"] or None


def guard(host, field="host"):
    """Resolve ``host`` once and check every address; returns a Target or raises.

    Bad syntax -> 400 naming the field; special-purpose address or special-use name -> 403. A
    name that does not resolve raises TargetUnresolvable: the probe "ran" and failed, like
    ``ping`` on an unknown host.
    """
    try:
        return _resolve(host)
    except targets.TargetError as exc:
        raise _invalid(field, exc) from exc
    except targets.TargetRefused as exc:
        raise _refused(field, exc) from exc


def _resolve(host):
    return targets.resolve_target(host, allowed_networks=allowed_networks(), nameservers=_nameservers(),
                                  timeout=current_app.config["DNS_TIMEOUT"], allowed_domains=allowed_domains())


def address_guard(host):
    """For engines that connect onwards (WHOIS referrals): the checked address for ``host``."""
    return _resolve(host).address


def _resolve_or_fail(host):
    """``(target, None)`` or ``(None, failed ProbeResult)`` when the name does not resolve."""
    try:
        return guard(host), None
    except targets.TargetUnresolvable as exc:
        return None, ProbeResult(False, f"{host}: {exc}", {"host": host, "error": exc.code, "message": str(exc)})


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
        record_type = "PTR"  # an address is a reverse (PTR) lookup
    if nameserver is not None:
        nameserver = _checked_nameserver(nameserver)
    servers = [nameserver] if nameserver else _nameservers()
    parameters = {"record_type": record_type, **({"nameserver": nameserver} if nameserver else {})}
    call = functools.partial(dns_engine.dns_lookup, name, record_type=record_type, nameservers=servers,
                             timeout=current_app.config["DNS_TIMEOUT"])
    return run_probe(user, "dns", domain, parameters, call, nameserver)


def _query_name(domain, field="domain"):
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


def _check_address(address, field):
    try:
        targets.check_address(address, allowed_networks())
    except targets.TargetRefused as exc:
        raise _refused(field, exc) from exc


def _checked_nameserver(text):
    """The nameserver as a canonical IP (no scope id), refused like a probe target when special."""
    try:
        address = targets.parse_address(text)
    except targets.TargetError as exc:
        raise _invalid("nameserver", exc) from exc
    if address is None:
        raise _invalid("nameserver", "must be an IP address")
    _check_address(address, "nameserver")
    return str(address)


def whois(user, domain):
    query, _ = _query_name(domain)
    if query == ".":
        raise _invalid("domain", "the root is not a WHOIS query: send a domain name or an IP address")
    cfg = current_app.config
    call = functools.partial(whois_engine.whois_lookup, query, root_server=cfg["WHOIS_ROOT_SERVER"],
                             guard=address_guard,
                             rdap_bootstrap_url=cfg["RDAP_BOOTSTRAP_URL"] or None,
                             timeout=cfg["WHOIS_TIMEOUT"], max_bytes=cfg["WHOIS_MAX_BYTES"])
    return run_probe(user, "whois", domain, {}, call)
