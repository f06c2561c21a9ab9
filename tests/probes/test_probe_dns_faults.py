"""DNS engine against a real misbehaving nameserver on loopback (issue 8 item 4): a UDP answer
with TC=1 whose TCP retry is refused, closed or never answered is a failed probe naming what
happened, not an exception."""
import pytest

from app.probes.dns import dns_lookup
from tests.probes.tiny_nameserver import TruncatingNameserver


@pytest.mark.parametrize("mode,code,text", [
    ("refuse", "connection_refused", "Connection refused"),
    ("close", "connection_closed", "closed the connection"),
    ("reset", "connection_reset", "reset"),
    ("silent", "timeout", "timed out"),
])
def test_truncated_answer_then_tcp_failure_is_a_failed_probe(mode, code, text):
    with TruncatingNameserver(mode) as server:
        res = dns_lookup("big.example.com", record_type="TXT", nameservers=[server.host], port=server.port,
                         timeout=1.0)
    assert server.udp_queries == 1 and server.tcp_connections == (0 if mode == "refuse" else 1)
    assert res.success is False and res.data["rcode"] is None
    assert res.data["error"] == code
    assert "truncated (TC=1)" in res.data["message"] and text in res.data["message"]
    assert text in res.text and "no servers could be reached" in res.text
    assert res.data["attempts"] == [{"server": server.host, "port": server.port, "protocol": "tcp",
                                     "error": code, "message": res.data["attempts"][0]["message"]}]


def test_nobody_listening_is_named_not_called_a_timeout():
    """Loopback answers a closed UDP port with ICMP port unreachable: "connection refused", as dig says."""
    with TruncatingNameserver("refuse") as server:
        port = server.port
    res = dns_lookup("example.com", nameservers=["127.0.0.1"], port=port, timeout=1.0)
    assert res.success is False and res.data["error"] == "connection_refused"
    assert "Connection refused" in res.data["message"] and "Connection refused" in res.text
    assert res.data["attempts"][0]["protocol"] == "udp"
