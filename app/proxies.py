"""Forwarded headers, believed only from the reverse proxies named in TRUSTED_PROXIES.

``TRUSTED_PROXIES`` is a comma-separated list of addresses or CIDRs. A request whose direct peer
is one of them takes its client address from ``X-Forwarded-For`` (walking from the right past
every trusted proxy, like nginx's ``real_ip_recursive``) and its scheme from the last
``X-Forwarded-Proto``. Anyone else's forwarded headers are ignored. ``X-Forwarded-Host`` is never
believed: links come from PUBLIC_BASE_URL or are relative.
"""
import ipaddress
from urllib.parse import urlsplit

from app.config import ConfigError


def parse_trusted_proxies(value):
    """The networks of ``value`` (a list or a comma-separated string); ConfigError when malformed."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    items = [str(item).strip() for item in items if str(item).strip()]
    if items == ["0"]:
        return []  # the old "no proxy" value
    networks = []
    for item in items:
        if item.isdigit():
            raise ConfigError(
                f"TRUSTED_PROXIES={item!r}: a number of proxies trusted forwarded headers from anyone; list the "
                "proxies' addresses or networks instead (e.g. TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8)")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES: {item!r} is not an IP address or network") from None
    return networks


def check_public_base_url(value):
    """PUBLIC_BASE_URL without its trailing slash; ConfigError unless it is an http(s) URL with a host."""
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"PUBLIC_BASE_URL must look like https://api.example.com[/prefix], not {value!r}")
    return value.rstrip("/")


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class TrustedProxies:
    """WSGI middleware applying X-Forwarded-For/-Proto only when the peer is a trusted proxy."""

    def __init__(self, app, networks):
        self.app = app
        self.networks = tuple(networks)

    def trusted(self, address):
        return address is not None and any(address in network for network in self.networks)

    def __call__(self, environ, start_response):
        if self.trusted(_address(environ.get("REMOTE_ADDR", ""))):
            self._apply(environ)
        return self.app(environ, start_response)

    def _apply(self, environ):
        hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        while hops:
            hop = hops.pop()
            address = _address(hop)
            if address is None:
                break  # garbage: keep the last address we could vouch for
            environ["REMOTE_ADDR"] = str(address)
            if not self.trusted(address):
                break
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
