"""The rate limiter's key: who a request counts against."""
import ipaddress

from flask import g
from flask_limiter.util import get_remote_address

# One IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): keying on the full
# address would give it 2**64 budgets.
IPV6_CLIENT_PREFIX = 64


def client_address_key(address):
    """The client part of ``address``: the IPv4 address (also when IPv4-mapped), or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except (ValueError, AttributeError):
        return str(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(ip)


def rate_limit_key():
    """``user:<id>`` when the request is authenticated, else ``ip:<client address or /64>``."""
    user = g.get("current_user")
    return f"user:{user.id}" if user is not None else client_ip_key()


def client_address():
    """The calling client as rate limits see it: its IPv4 address or its IPv6 /64."""
    return client_address_key(get_remote_address())


def client_ip_key():
    """``ip:<client address or /64>``, for limits that must hold per address (login, register)."""
    return f"ip:{client_address()}"
