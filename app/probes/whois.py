"""WHOIS (RFC 3912, TCP port 43) with referral following, and RDAP (RFC 9083) first where configured.

Port 43: ask the root server (IANA by default), follow its ``refer:``/``whois:`` line to the
registry (or RIR for an IP address), then the registry's ``Registrar WHOIS Server:`` (or ARIN's
``ReferralServer: whois://``) - at most ``max_hops`` servers, ``max_bytes`` per answer, one
deadline for everything, loop detection, and every server passed through ``guard`` (which returns
the checked IP to connect to: no second resolution).

RDAP: with ``rdap_bootstrap_url`` set (IANA bootstrap, RFC 9224 - an https URL, a file:// URL or
a plain path to ``dns.json``; ``ipv4.json``/``ipv6.json`` are looked up beside it), the RDAP server
for the TLD / address block is asked first over HTTP(S); any failure other than an authoritative
404 falls back to port 43 (many ccTLDs have no RDAP).
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, urljoin, urlsplit

from . import limits as L
from .results import ProbeResult
from .targets import TargetError, TargetRefused, TargetUnresolvable, normalize_domain, parse_address

_NO_MATCH = re.compile(
    r"^\s*(no match( for)?\b|not found\b|no data found|no entries found|no matching record|"
    r"domain not found|status:\s*(free|available)\b|%+ no such domain|object does not exist|"
    r"the queried object does not exist|% this query returned 0 objects)", re.I | re.M)

_FIELDS = {
    "registrar": ("registrar", "sponsoring registrar", "registrar name", "registrar organization"),
    "creation_date": ("creation date", "created", "created on", "registered on", "registration time",
                      "domain registration date", "registered", "created date", "regdate"),
    "expiry_date": ("registry expiry date", "registrar registration expiration date", "expiration date",
                    "expiry date", "expires", "expires on", "paid-till", "expiration time",
                    "domain expiration date", "renewal date"),
    "updated_date": ("updated date", "last updated", "last updated on", "last-update", "last modified",
                     "changed", "updated", "modified"),
}
_STATUS_KEYS = ("domain status", "status", "state")
_NS_KEYS = ("name server", "nameserver", "nameservers", "nserver", "name servers", "dns")
_REFERRAL_KEYS = ("refer", "whois", "registrar whois server", "whois server", "referralserver")


# ----------------------------------------------------------------------------------- helpers
class _Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise TimeoutError(f"time bound reached during {what}")


def _kv_lines(text):
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9 ./()_-]{0,60}?)\s*:\s*(.*?)\s*$", line)
        if m and m.group(2):
            yield m.group(1).strip().lower(), m.group(2)


def _norm_date(value: str) -> str:
    v = value.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S%z",
                "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y.%m.%d", "%d-%b-%Y",
                "%d.%m.%Y", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S%z", "%Y%m%d"):
        try:
            d = datetime.strptime(v.replace(" (UTC)", "").replace(" UTC", ""), fmt)
        except ValueError:
            continue
        if fmt in ("%Y-%m-%d", "%Y.%m.%d", "%d-%b-%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d"):
            return d.date().isoformat()
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return v


def parse_whois(text: str) -> dict:
    """Registrar, dates, status and name servers from a WHOIS answer (first value of each wins)."""
    out = {"registrar": None, "creation_date": None, "expiry_date": None, "updated_date": None,
           "status": [], "name_servers": []}
    for key, value in _kv_lines(text):
        for field, keys in _FIELDS.items():
            if key in keys and out[field] is None:
                if field == "registrar" and (value.lower().startswith("http") or "whois" in key):
                    continue
                out[field] = _norm_date(value) if field.endswith("_date") else value
        if key in _STATUS_KEYS:
            s = value.split()[0]
            if s and s not in out["status"]:
                out["status"].append(s)
        if key in _NS_KEYS:
            ns = value.split()[0].rstrip(".").lower()
            if ns and "." in ns and ns not in out["name_servers"]:
                out["name_servers"].append(ns)
    return out


def _referral(text: str, current: str) -> str | None:
    for key, value in _kv_lines(text):
        if key in _REFERRAL_KEYS:
            v = value.strip().split()[0]
            if "://" in v:
                scheme, _, rest = v.partition("://")
                if scheme.lower() not in ("whois",):
                    continue  # rwhois://, http://: not port 43 WHOIS
                v = rest
            v = v.strip("/").lower()
            if ":" in v and v.count(":") == 1:
                v = v.split(":")[0]  # host:43
            if v and v != current.lower() and re.match(r"^[a-z0-9.-]+$|^[0-9a-f:.]+$", v):
                return v
    return None


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# ----------------------------------------------------------------------------------- port 43
def _whois_query(address: str, query: str, deadline: _Deadline, max_bytes: int):
    """-> (text, truncated).  Every socket operation is bounded by the deadline."""
    deadline.check("connect")
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.settimeout(max(0.01, deadline.left()))
        s.connect((address, 43))
        s.settimeout(max(0.01, deadline.left()))
        s.sendall(query.encode("ascii") + b"\r\n")
        chunks, n = [], 0
        truncated = False
        while True:
            left = deadline.left()
            if left <= 0:
                raise TimeoutError("time bound reached while reading the answer")
            s.settimeout(left)
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            n += len(data)
            if n > max_bytes:
                truncated = True
                break
        raw = b"".join(chunks)[:max_bytes]
        return _decode(raw).replace("\r\n", "\n").replace("\r", "\n"), truncated
    finally:
        s.close()


# ----------------------------------------------------------------------------------- RDAP
_boot_lock = threading.Lock()
_boot_cache: dict = {}
_BOOT_TTL = 3600.0


def _http_get(url: str, guard, deadline: _Deadline, max_bytes: int, accept: str):
    """GET with every host passed through the guard, bounded redirects, size and time.
    -> (status, body bytes, final url)"""
    for _ in range(L.RDAP_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported URL {url!r}")
        host = parts.hostname
        address = guard(host)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        deadline.check(f"connect to {host}")
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.01, deadline.left()))
            sock.connect((address, port))
            if parts.scheme == "https":
                ctx = ssl.create_default_context()
                sock = ctx.wrap_socket(sock, server_hostname=host)
            conn = http.client.HTTPConnection(host, port, timeout=max(0.01, deadline.left()))
            conn.sock = sock
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            conn.request("GET", path, headers={"Accept": accept, "User-Agent": "ProbeOps/1.0",
                                               "Connection": "close"})
            sock.settimeout(max(0.01, deadline.left()))
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urljoin(url, resp.getheader("Location"))
                continue
            length = resp.getheader("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise ValueError(f"answer too large ({length} bytes > {max_bytes})")
            chunks, n = [], 0
            while True:
                left = deadline.left()
                if left <= 0:
                    raise TimeoutError("time bound reached while reading the RDAP answer")
                sock.settimeout(left)
                chunk = resp.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                n += len(chunk)
                if n > max_bytes:
                    raise ValueError(f"answer too large (> {max_bytes} bytes)")
            return resp.status, b"".join(chunks), url
        finally:
            sock.close()
    raise ValueError(f"too many redirects (> {L.RDAP_MAX_REDIRECTS})")


def _bootstrap_location(base: str, kind: str) -> str:
    """The dns/ipv4/ipv6 registry file beside the configured one."""
    name = {"dns": "dns.json", "ipv4": "ipv4.json", "ipv6": "ipv6.json"}[kind]
    if base.endswith(".json"):
        cut = base.rsplit("/", 1)
        return (cut[0] + "/" + name) if len(cut) == 2 else name
    return base.rstrip("/") + "/" + name


def _load_bootstrap(base: str, kind: str, guard, deadline: _Deadline) -> dict:
    loc = _bootstrap_location(base, kind)
    if loc.startswith("file://"):
        loc = loc[len("file://"):]
    local = "://" not in loc
    now = time.monotonic()
    key = loc
    with _boot_lock:
        hit = _boot_cache.get(key)
    if local:
        mtime = os.stat(loc).st_mtime
        if hit and hit[0] == mtime:
            return hit[1]
        with open(loc, "rb") as f:
            data = json.loads(f.read(8_000_000))
        with _boot_lock:
            _boot_cache[key] = (mtime, data)
        return data
    if hit and hit[0] > now:
        return hit[1]
    status, body, _ = _http_get(loc, guard, deadline, 8_000_000, "application/json")
    if status != 200:
        raise ValueError(f"bootstrap {loc}: HTTP {status}")
    data = json.loads(body)
    with _boot_lock:
        _boot_cache[key] = (now + _BOOT_TTL, data)
    return data


def _rdap_base(boot: dict, query: str, ip) -> str | None:
    best, best_len = None, -1
    for entry in boot.get("services", []):
        if len(entry) < 2 or not entry[1]:
            continue
        urls = entry[1]
        url = next((u for u in urls if u.startswith("https://")), urls[0])
        for key in entry[0]:
            if ip is None:
                k = key.lower().rstrip(".")
                if (query == k or query.endswith("." + k)) and len(k) > best_len:
                    best, best_len = url, len(k)
            else:
                try:
                    net = ipaddress.ip_network(key, strict=False)
                except ValueError:
                    continue
                if ip.version == net.version and ip in net and net.prefixlen > best_len:
                    best, best_len = url, net.prefixlen
    return best


def _vcard_fn(entity):
    try:
        for item in entity["vcardArray"][1]:
            if item[0] == "fn":
                return item[3]
    except (KeyError, IndexError, TypeError):
        pass
    return None


def parse_rdap(obj: dict) -> dict:
    """Registrar, dates, status and name servers of an RDAP object; raises on a malformed one."""
    status = obj.get("status") or []
    if not isinstance(status, list) or not all(isinstance(s, str) for s in status):
        raise TypeError("status is not a list of strings")
    out = {"registrar": None, "creation_date": None, "expiry_date": None, "updated_date": None,
           "status": list(status), "name_servers": []}
    for ev in obj.get("events") or []:
        action, date = ev.get("eventAction"), ev.get("eventDate")
        field = {"registration": "creation_date", "expiration": "expiry_date",
                 "last changed": "updated_date"}.get(action)
        if field and date and out[field] is None:
            out[field] = _norm_date(date)
    for ent in obj.get("entities") or []:
        if "registrar" in (ent.get("roles") or []):
            out["registrar"] = _vcard_fn(ent) or ent.get("handle")
            break
    for ns in obj.get("nameservers") or []:
        name = ns.get("ldhName") or ""
        if not isinstance(name, str):
            raise TypeError("ldhName is not a string")
        name = name.rstrip(".").lower()
        if name and name not in out["name_servers"]:
            out["name_servers"].append(name)
    if obj.get("objectClassName") == "ip network":
        out["network"] = {k: obj.get(k) for k in ("handle", "name", "startAddress", "endAddress", "type")}
    return out


def _rdap(query, ip, base_url, guard, deadline, max_bytes, notes):
    """-> ProbeResult or None (fall back to port 43)."""
    kind = "dns" if ip is None else f"ipv{ip.version}"
    try:
        boot = _load_bootstrap(base_url, kind, guard, deadline)
    except (OSError, ValueError, TimeoutError, http.client.HTTPException, TargetRefused, TargetUnresolvable,
            TargetError) as exc:
        notes.append(f"RDAP bootstrap unavailable: {exc}")
        return None
    server = _rdap_base(boot, query, ip)
    if not server:
        notes.append("RDAP: no server in the bootstrap registry for this query; using port 43")
        return None
    if not server.endswith("/"):
        server += "/"
    url = server + ("domain/" + quote(query) if ip is None else "ip/" + quote(str(ip)))
    try:
        status, body, final = _http_get(url, guard, deadline, max_bytes,
                                        "application/rdap+json, application/json")
    except (TargetRefused, TargetUnresolvable, TargetError) as exc:
        notes.append(f"RDAP server refused by the target guard: {exc}")
        return None
    except (OSError, ValueError, TimeoutError, http.client.HTTPException, ssl.SSLError) as exc:
        notes.append(f"RDAP query {url} failed: {exc}")
        return None
    chain = [{"server": urlsplit(final).hostname, "url": final, "protocol": "rdap", "status": status,
              "bytes": len(body)}]
    if status == 404:
        text = f"% RDAP query {final}\n% 404 Not Found: the registry has no object for {query}\n\n" + _decode(body)
        return ProbeResult(False, text, {"query": query, "source": "rdap", "server_chain": chain,
                                         "rdap_url": final, "error": "not_found",
                                         "message": f"no match for {query} (RDAP 404)",
                                         **parse_rdap({}), "notes": notes})
    if status != 200:
        notes.append(f"RDAP query {final} answered HTTP {status}; using port 43")
        return None
    try:
        obj = json.loads(body)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        notes.append(f"RDAP answer from {final} is not valid JSON ({exc}); using port 43")
        return None
    try:
        fields = parse_rdap(obj)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        notes.append(f"RDAP answer from {final} has an unexpected shape ({type(exc).__name__}); using port 43")
        return None
    text = f"% RDAP query {final}\n\n" + json.dumps(obj, indent=2, ensure_ascii=False)
    return ProbeResult(True, text, {"query": query, "source": "rdap", "server_chain": chain,
                                    "rdap_url": final, **fields, "notes": notes})


# ----------------------------------------------------------------------------------- entry point
def whois_lookup(query: str, *, root_server="whois.iana.org", guard: Callable[[str], str],
                 rdap_bootstrap_url: str | None = None, timeout=L.WHOIS_TIMEOUT_DEFAULT,
                 max_hops=L.WHOIS_MAX_HOPS_DEFAULT, max_bytes=L.WHOIS_MAX_BYTES_DEFAULT) -> ProbeResult:
    """Look ``query`` (a domain or an IP address) up; see the module docstring.

    ``guard(host)`` returns the checked IP address to connect to, or raises TargetRefused /
    TargetUnresolvable (TargetError for a malformed referral).  Raises TargetError for a bad query
    and ValueError for out-of-range bounds; every other failure is a ``success: False`` result.
    """
    timeout = L.check_range("timeout", timeout, L.WHOIS_TIMEOUT_MIN, L.WHOIS_TIMEOUT_MAX)
    max_hops = L.check_range("max_hops", max_hops, L.WHOIS_MAX_HOPS_MIN, L.WHOIS_MAX_HOPS_MAX, int)
    max_bytes = L.check_range("max_bytes", max_bytes, L.WHOIS_MAX_BYTES_MIN, L.WHOIS_MAX_BYTES_MAX, int)
    if not isinstance(query, str):
        raise TargetError("query must be a string")
    ip = parse_address(query)
    q = str(ip) if ip is not None else normalize_domain(query)
    if q == ".":
        raise TargetError("query must be a domain name or an IP address")
    deadline = _Deadline(timeout)
    notes: list[str] = []
    if rdap_bootstrap_url:
        # RDAP gets at most half the time, so a dead RDAP server leaves room for port 43
        res = _rdap(q, ip, rdap_bootstrap_url, guard, _Deadline(timeout / 2), max_bytes, notes)
        if res is not None:
            return res
    return _port43(q, root_server, guard, deadline, max_hops, max_bytes, notes)


def _port43(q, root_server, guard, deadline, max_hops, max_bytes, notes):
    chain: list[dict] = []
    answers: list[tuple[str, str, str]] = []   # (server, address, text)
    seen = set()
    server = root_server.strip().lower().rstrip(".")
    error = None
    while server:
        if len(chain) >= max_hops:
            notes.append(f"referral to {server} not followed: hop bound ({max_hops}) reached")
            break
        if server in seen:
            notes.append(f"referral loop: {server} was already asked")
            break
        seen.add(server)
        try:
            address = guard(server)
        except (TargetRefused, TargetUnresolvable, TargetError) as exc:
            notes.append(f"referral to {server} refused: {exc}" if chain else f"root server {server}: {exc}")
            if not chain:
                error = ("refused" if isinstance(exc, TargetRefused) else "unresolvable", str(exc))
            break
        if address in seen and address != server:
            notes.append(f"referral loop: {server} ({address}) was already asked")
            break
        seen.add(address)
        hop = {"server": server, "address": address, "port": 43, "protocol": "whois"}
        chain.append(hop)
        try:
            text, truncated = _whois_query(address, q, deadline, max_bytes)
        except (OSError, TimeoutError) as exc:
            hop["error"] = str(exc) or exc.__class__.__name__
            notes.append(f"{server} ({address}): {hop['error']}")
            if isinstance(exc, TimeoutError) or not answers:
                error = error or ("timeout" if isinstance(exc, (TimeoutError, socket.timeout)) else "connect",
                                  f"{server}: {hop['error']}")
            break
        hop["bytes"] = len(text)
        if truncated:
            hop["truncated"] = True
            notes.append(f"answer from {server} truncated at {max_bytes} bytes")
        answers.append((server, address, text))
        nxt = _referral(text, server)
        hop["referral"] = nxt
        if nxt is None:
            break
        if nxt in seen:
            notes.append(f"referral loop: {server} refers to {nxt}, already asked")
            break
        server = nxt
    # the authoritative answer: the deepest server's; when a registrar has nothing, the registry's
    auth = answers[-1] if answers else None
    if (auth is not None and len(answers) >= 3 and (not auth[2].strip() or _NO_MATCH.search(auth[2]))
            and not _NO_MATCH.search(answers[-2][2])):
        notes.append(f"{auth[0]} had no record; the registry's answer is shown")
        auth = answers[-2]
    fields = {"registrar": None, "creation_date": None, "expiry_date": None, "updated_date": None,
              "status": [], "name_servers": []}
    if auth is not None:
        # the authoritative answer first, earlier (registry) answers fill the gaps; not the root's
        sources = [auth[2]] + [t for s, _a, t in reversed(answers[1:]) if t is not auth[2]]
        for text in sources:
            for k, v in parse_whois(text).items():
                if not fields[k]:
                    fields[k] = v
    data = {"query": q, "source": "whois", "server_chain": chain, **fields, "notes": notes,
            "authoritative_server": auth[0] if auth else None}
    head = [f"% WHOIS {q}",
            "% server chain: " + (" -> ".join(f"{h['server']} ({h['address']})" for h in chain) or "none")]
    head += [f"% note: {n}" for n in notes]
    if auth is None:
        code, msg = error or ("no_answer", "no WHOIS server answered")
        data.update(error=code, message=msg)
        return ProbeResult(False, "\n".join(head + ["", f"whois: {msg}"]), data)
    head.append(f"% authoritative answer from {auth[0]} ({auth[1]}):")
    text = "\n".join(head) + "\n\n" + auth[2]
    if _NO_MATCH.search(auth[2]):
        data.update(error="not_found", message=f"no match for {q} at {auth[0]}")
        return ProbeResult(False, text, data)
    if error and error[0] == "timeout":
        data.update(error="timeout", message=error[1])
    return ProbeResult(True, text, data)
