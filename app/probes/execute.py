"""Run one ProbeSpec where it is: resolve the target here, guard it with the local policy, run the engine.

No Flask. ``run_spec`` never raises: every way a probe can end is an OUTCOME dict
``{"status": "finished"|"failed", "success", "result", "data", "code", "address"}``.
"finished": the engine ran and answered (success true or false); "failed": it could not run
(refused or invalid target, a name that does not resolve, an engine crash).
"""
import functools
import logging

from app.probes import targets
from app.probes.registry import PROBE_TYPES

log = logging.getLogger("probeops")

TARGET_REFUSED = "target_refused"
INVALID_TARGET = "invalid_target"
INTERNAL_ERROR = "internal_error"


@functools.lru_cache(maxsize=16)
def _networks(spec):
    return targets.parse_networks(spec)


@functools.lru_cache(maxsize=16)
def _domains(spec):
    return targets.parse_domains(spec)


class Guard:
    """The local policy made usable: resolve and check hosts, check query names and addresses."""

    def __init__(self, policy, dns_timeout):
        self.policy = policy
        self.networks = _networks(policy.allowed_networks or "")
        self.domains = _domains(policy.allowed_domains or "")
        self.nameservers = tuple(policy.nameservers or ())
        self.whois_root_server = policy.whois_root_server
        self.rdap_bootstrap_url = policy.rdap_bootstrap_url
        self.dns_timeout = dns_timeout

    def resolve(self, host):
        """The checked Target for ``host`` (TargetError / TargetRefused / TargetUnresolvable)."""
        return targets.resolve_target(host, allowed_networks=self.networks, nameservers=list(self.nameservers) or None,
                                      timeout=self.dns_timeout, allowed_domains=self.domains)

    def address_guard(self, host):
        """For engines that connect onwards (WHOIS referrals): the checked address for ``host``."""
        return self.resolve(host).address

    def check_address(self, address):
        targets.check_address(address, self.networks)

    def query_name(self, text):
        """``(name, address)`` of a DNS/WHOIS query, checked (TargetError / TargetRefused)."""
        address = targets.parse_address(text)
        name = str(address) if address is not None else targets.normalize_domain(text)
        if address is not None:
            self.check_address(address)
        else:
            targets.check_query_name(name, allowed_networks=self.networks, allowed_domains=self.domains)
        return name, address


def outcome(status, success, result, data=None, code=None, address=None):
    """An OUTCOME dict."""
    return {"status": status, "success": bool(success), "result": result, "data": data or {},
            "code": code, "address": address}


def _failed(text, code, data=None):
    return outcome("failed", False, text, data, code)


def _prepare(probe, spec, options, guard):
    """``(prepared target, options, address)`` for the engine; raises the targets errors."""
    if probe.target_field == "host":
        target = guard.resolve(spec.target)
        return target, options, target.address
    name, address = guard.query_name(spec.target)
    if probe.name == "whois" and name == ".":
        raise targets.TargetError("the root is not a WHOIS query: send a domain name or an IP address")
    address_used = None
    if probe.name == "dns":
        if address is not None:
            options = {**options, "record_type": "PTR"}  # an address is a reverse (PTR) lookup
        nameserver = options.get("nameserver")
        if nameserver:
            parsed = targets.parse_address(nameserver)
            if parsed is None:
                raise targets.TargetError("nameserver must be an IP address")
            guard.check_address(parsed)
            options = {**options, "nameserver": str(parsed)}
            address_used = str(parsed)
    return name, options, address_used


def run_spec(spec, policy):
    """Run ``spec`` here under ``policy``; returns an OUTCOME, never raises."""
    probe = PROBE_TYPES.get(spec.type)
    if probe is None:
        return _failed(f"unknown probe type {spec.type!r}", INVALID_TARGET)
    field = probe.target_field
    try:
        options = {**probe.defaults(), **(spec.options or {})}
        guard = Guard(policy, spec.bounds.get("dns_timeout", 3.0))
        try:
            prepared, options, address = _prepare(probe, spec, options, guard)
        except targets.TargetError as exc:
            return _failed(f"{field}: {exc}", INVALID_TARGET)
        except targets.TargetRefused as exc:
            return _failed(f"{field}: {exc}", TARGET_REFUSED)
        except targets.TargetUnresolvable as exc:
            return _failed(f"{spec.target}: {exc}", None,
                           {"host": spec.target, "error": exc.code, "message": str(exc)})
        result = probe.engine(prepared, options, spec.bounds, guard)
    except Exception:
        log.exception("probe %s to %r crashed", spec.type, spec.target)
        return _failed("The probe failed with an internal error", INTERNAL_ERROR)
    return outcome("finished", result.success, result.text, result.data, None, address)
