"""The registry, the spec and the executor, against loopback (no Flask)."""
import dataclasses
import json
import time

import pytest

from app.probes.execute import run_spec
from app.probes.registry import PROBE_TYPES, OptionError
from app.probes.spec import LocalPolicy, ProbeSpec

BOUNDS = {"ping_interval": 0.05, "ping_timeout": 0.5, "traceroute_probes_per_hop": 1,
          "traceroute_hop_timeout": 0.5, "traceroute_total_timeout": 5.0, "dns_timeout": 1.0,
          "whois_timeout": 2.0, "whois_max_bytes": 100_000}
LOOPBACK = LocalPolicy(allowed_networks="127.0.0.1/32")


def _spec(probe_type, target, **options):
    return ProbeSpec(probe_type, target, options, BOUNDS, time.time() + 30)


def test_ping_loopback_allowed_is_a_finished_outcome():
    out = run_spec(_spec("ping", "127.0.0.1", count=2), LOOPBACK)
    assert (out["status"], out["success"], out["code"], out["address"]) == ("finished", True, None, "127.0.0.1")
    assert "2 packets transmitted, 2 received" in out["result"] and out["data"]
    json.dumps(out)


def test_address_outside_the_policy_is_refused():
    out = run_spec(_spec("ping", "127.0.0.2", count=1), LOOPBACK)
    assert (out["status"], out["success"], out["code"]) == ("failed", False, "target_refused")
    assert out["result"].startswith("host: ")


def test_a_name_that_does_not_resolve_fails_with_the_resolvers_reason():
    # a nameserver on loopback that refuses UDP: the resolver's reason, not a refusal
    policy = LocalPolicy(allowed_networks="127.0.0.1/32", nameservers=("127.0.0.1",))
    out = run_spec(_spec("ping", "nothing.example.net", count=1), policy)
    assert (out["status"], out["success"], out["code"]) == ("failed", False, None)
    assert out["data"]["error"] in ("connection_refused", "timeout", "resolver_error")
    assert out["result"].startswith("nothing.example.net: cannot resolve")


def test_invalid_target_and_unknown_type():
    assert run_spec(_spec("ping", "http://x/", count=1), LOOPBACK)["code"] == "invalid_target"
    assert run_spec(_spec("nope", "127.0.0.1"), LOOPBACK)["status"] == "failed"


def test_dns_refuses_a_special_nameserver_and_special_names():
    out = run_spec(_spec("dns", "example.com", record_type="A", nameserver="10.0.0.1"), LOOPBACK)
    assert out["code"] == "target_refused"
    assert run_spec(_spec("dns", "printer.local"), LOOPBACK)["code"] == "target_refused"


def test_spec_round_trips_through_json():
    spec = _spec("dns", "example.com", record_type="MX", nameserver=None)
    again = ProbeSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert set(spec.to_dict()) == {f.name for f in dataclasses.fields(ProbeSpec)}  # a new field travels too
    spec.to_dict()["options"]["record_type"] = "A"
    assert spec.options["record_type"] == "MX"  # the dict is a copy: the sender may change it


def test_policy_from_config_mapping():
    policy = LocalPolicy.from_config({"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "DNS_NAMESERVERS": "1.1.1.1, 9.9.9.9",
                                      "PROBE_ALLOWED_DOMAINS": ["lab.test"]})
    assert policy.nameservers == ("1.1.1.1", "9.9.9.9") and policy.allowed_domains == "lab.test"
    assert policy.whois_root_server == "whois.iana.org"


def test_options_defaults_bounds_and_time_bound():
    ping = PROBE_TYPES["ping"]
    assert ping.validate_options({}, {"PING_MAX_COUNT": 10}) == {"count": 4}
    with pytest.raises(OptionError) as exc:
        ping.validate_options({"count": 11}, {"PING_MAX_COUNT": 10})
    assert exc.value.field == "count"
    with pytest.raises(OptionError):
        ping.validate_options({"size": 1}, {"PING_MAX_COUNT": 10})
    assert PROBE_TYPES["dns"].validate_options({"record_type": "mx"}, {}) == {"record_type": "MX", "nameserver": None}
    assert ping.bound_seconds({"count": 2}, BOUNDS) == pytest.approx(0.6)
    assert set(PROBE_TYPES) == {"ping", "traceroute", "dns", "whois"}
