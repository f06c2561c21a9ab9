"""Default bounds for the probe engines.

Every bound is enforced by the engine *before* anything is sent (a value out of range raises
``ValueError`` with the parameter named), so the API may pass user input straight through after
its own 400-level validation.  The API's configuration may narrow these; it must not widen the
hard caps (``*_MAX``) without reading docs/probes.md first.
"""

# ping
PING_COUNT_DEFAULT = 4
PING_COUNT_MIN, PING_COUNT_MAX = 1, 10
PING_INTERVAL_DEFAULT = 1.0          # seconds between echo requests
PING_INTERVAL_MIN, PING_INTERVAL_MAX = 0.01, 5.0   # the API config decides the real interval (default 1 s)
PING_TIMEOUT_DEFAULT = 2.0           # per-packet wait for the reply
PING_TIMEOUT_MIN, PING_TIMEOUT_MAX = 0.1, 10.0
PING_PAYLOAD_DEFAULT = 56            # iputils default: 56 data bytes -> 64 ICMP bytes
PING_PAYLOAD_MIN, PING_PAYLOAD_MAX = 16, 1472

# traceroute
TRACE_MAX_HOPS_DEFAULT = 30
TRACE_MAX_HOPS_MIN, TRACE_MAX_HOPS_MAX = 1, 64
TRACE_PROBES_DEFAULT = 3
TRACE_PROBES_MIN, TRACE_PROBES_MAX = 1, 5
TRACE_TIMEOUT_DEFAULT = 2.0          # per-probe wait
TRACE_TIMEOUT_MIN, TRACE_TIMEOUT_MAX = 0.1, 10.0
TRACE_TOTAL_DEFAULT = 60.0           # hard bound on the whole trace
TRACE_TOTAL_MIN, TRACE_TOTAL_MAX = 1.0, 120.0
TRACE_SIM_PROBES = 16                # probes in flight at once (Debian traceroute -N default)
TRACE_BASE_PORT = 33434              # first UDP destination port (traceroute -p default)

# dns
DNS_RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV", "CAA")
DNS_TIMEOUT_DEFAULT = 3.0            # whole lookup, all servers, UDP + TCP fallback
DNS_TIMEOUT_MIN, DNS_TIMEOUT_MAX = 0.1, 15.0
DNS_EDNS_PAYLOAD = 1232              # DNS flag day 2020 value
DNS_MAX_NAMESERVERS = 3

# whois
WHOIS_TIMEOUT_DEFAULT = 10.0         # whole lookup, every hop included
WHOIS_TIMEOUT_MIN, WHOIS_TIMEOUT_MAX = 0.5, 30.0
WHOIS_MAX_HOPS_DEFAULT = 3           # root -> registry -> registrar
WHOIS_MAX_HOPS_MIN, WHOIS_MAX_HOPS_MAX = 1, 5
WHOIS_MAX_BYTES_DEFAULT = 1_000_000  # per answer
WHOIS_MAX_BYTES_MIN, WHOIS_MAX_BYTES_MAX = 1024, 4_000_000
RDAP_MAX_REDIRECTS = 3

# target guard
RESOLVE_TIMEOUT_DEFAULT = 3.0


def check_range(name, value, lo, hi, kind=float):
    """Return ``value`` converted to ``kind`` if lo <= value <= hi, else raise ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number")
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number") from None
    if kind is int and v != value:
        raise ValueError(f"{name} must be an integer")
    if v != v or not (lo <= v <= hi):  # NaN or out of range
        raise ValueError(f"{name} must be between {lo} and {hi}")
    return v
