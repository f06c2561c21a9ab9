"""Lab WHOIS (RFC 3912, port 43) and RDAP (RFC 9083, HTTP) servers.

Run inside the lab's service namespace by tests/lab/netlab.py:

    python servers.py --root 198.18.10.43 --registry 198.18.10.44 --registrar 198.18.10.45 \
        --rir 198.18.10.46 --rdap 198.18.10.80 [--root fd00:...::43 ...]

Each --role may be given several times (one per address).  The answers imitate IANA, a thin
gTLD registry (Verisign style), a registrar and an RIR (ARIN style).  Every request is logged to
stdout as ``<role> <client> <query>`` so tests can see which servers were asked.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ZONE = "probeops.test"
ROOT_HOST = f"whois.{ZONE}"
REGISTRY_HOST = f"whois.nic.{ZONE}"
REGISTRAR_HOST = f"whois.registrar.{ZONE}"
RIR_HOST = f"whois.rir.{ZONE}"
PRIVATE_HOST = f"whois.private.{ZONE}"   # resolves to 10.1.2.3: the guard must refuse it
RDAP_BASE = f"http://rdap.{ZONE}/"

# domain -> registry facts
DOMAINS = {
    "example.test": {
        "id": "2336799_DOMAIN_TEST-LAB", "created": "2001-02-03T04:05:06Z",
        "updated": "2025-03-04T05:06:07Z", "expires": "2030-02-03T04:05:06Z",
        "registrar": "ProbeOps Lab Registrar, Inc.", "iana_id": "9999",
        "status": ["clientDeleteProhibited", "clientTransferProhibited"],
        "ns": ["NS1.PROBEOPS.TEST", "NS2.PROBEOPS.TEST"], "registrar_whois": REGISTRAR_HOST,
    },
    "thin.test": {  # registry names no registrar WHOIS server: the registry answer is final
        "id": "42_DOMAIN_TEST-LAB", "created": "2010-10-10T10:10:10Z",
        "updated": "2024-01-01T00:00:00Z", "expires": "2026-10-10T10:10:10Z",
        "registrar": "Thin Registrar GmbH", "iana_id": "1234",
        "status": ["ok"], "ns": ["NS1.PROBEOPS.TEST"], "registrar_whois": None,
    },
    "evil.test": {  # the registrar WHOIS server resolves to a private address
        "id": "666_DOMAIN_TEST-LAB", "created": "2020-01-01T00:00:00Z",
        "updated": "2020-01-02T00:00:00Z", "expires": "2027-01-01T00:00:00Z",
        "registrar": "Evil Registrar", "iana_id": "6666",
        "status": ["ok"], "ns": ["NS1.PROBEOPS.TEST"], "registrar_whois": PRIVATE_HOST,
    },
    "loop.test": {  # the "registrar" WHOIS server is the root again: a referral loop
        "id": "777_DOMAIN_TEST-LAB", "created": "2019-01-01T00:00:00Z",
        "updated": "2019-01-02T00:00:00Z", "expires": "2029-01-01T00:00:00Z",
        "registrar": "Loop Registrar", "iana_id": "7777",
        "status": ["ok"], "ns": ["NS1.PROBEOPS.TEST"], "registrar_whois": ROOT_HOST,
    },
}


def root_answer(q: str) -> str:
    head = ("% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n"
            "% This query returned 1 object\n\n")
    try:
        ip = ipaddress.ip_address(q)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.version == 4:
            return head + (f"refer:        {RIR_HOST}\n\ninetnum:      198.0.0.0 - 198.255.255.255\n"
                           f"organisation: ProbeOps Lab RIR\nstatus:       ALLOCATED\n\n"
                           f"whois:        {RIR_HOST}\n\nchanged:      1993-05-01\nsource:       IANA\n")
        return head + (f"refer:        {RIR_HOST}\n\ninet6num:     fd00::/8\n"
                       f"organisation: ProbeOps Lab RIR\nstatus:       ALLOCATED\n\n"
                       f"whois:        {RIR_HOST}\n\nsource:       IANA\n")
    tld = q.rstrip(".").rsplit(".", 1)[-1].lower()
    if tld == "test":
        return head + (f"refer:        {REGISTRY_HOST}\n\ndomain:       TEST\n\n"
                       "organisation: ProbeOps Lab Registry\naddress:      Lab\n\n"
                       f"nserver:      NS1.PROBEOPS.TEST 198.18.10.53\n\nwhois:        {REGISTRY_HOST}\n\n"
                       "status:       ACTIVE\nremarks:      Registration information: http://lab.invalid\n\n"
                       "created:      2025-01-01\nchanged:      2025-06-01\nsource:       IANA\n")
    if tld == "selfref":
        return head + f"refer:        {ROOT_HOST}\n\ndomain:       SELFREF\n\nwhois:        {ROOT_HOST}\n"
    return ("% IANA WHOIS server\n% for more information on IANA, visit http://www.iana.org\n\n"
            "% This query returned 0 objects.\n")


def registry_answer(q: str) -> str:
    d = DOMAINS.get(q.lower().rstrip("."))
    foot = ">>> Last update of whois database: 2025-11-23T00:00:00Z <<<\n"
    if d is None:
        return f'No match for "{q.upper()}".\n{foot}'
    lines = [f"   Domain Name: {q.upper()}", f"   Registry Domain ID: {d['id']}"]
    if d["registrar_whois"]:
        lines.append(f"   Registrar WHOIS Server: {d['registrar_whois']}")
    lines += ["   Registrar URL: http://registrar.invalid",
              f"   Updated Date: {d['updated']}", f"   Creation Date: {d['created']}",
              f"   Registry Expiry Date: {d['expires']}", f"   Registrar: {d['registrar']}",
              f"   Registrar IANA ID: {d['iana_id']}"]
    lines += [f"   Domain Status: {s} https://icann.org/epp#{s}" for s in d["status"]]
    lines += [f"   Name Server: {n}" for n in d["ns"]]
    lines += ["   DNSSEC: unsigned", foot]
    return "\n".join(lines)


def registrar_answer(q: str) -> str:
    d = DOMAINS.get(q.lower().rstrip("."))
    if d is None:
        return "No match for domain.\n"
    lines = [f"Domain Name: {q.lower()}", f"Registry Domain ID: {d['id']}",
             f"Registrar WHOIS Server: {REGISTRAR_HOST}", "Registrar URL: http://registrar.invalid",
             f"Updated Date: {d['updated']}", f"Creation Date: {d['created']}",
             f"Registrar Registration Expiration Date: {d['expires']}",
             f"Registrar: {d['registrar']}", f"Registrar IANA ID: {d['iana_id']}",
             "Registrar Abuse Contact Email: abuse@registrar.invalid"]
    lines += [f"Domain Status: {s} https://icann.org/epp#{s}" for s in d["status"]]
    lines += ["Registrant Organization: ProbeOps Lab", "Registrant Country: ZZ"]
    lines += [f"Name Server: {n.lower()}" for n in d["ns"]]
    lines += ["DNSSEC: unsigned", "URL of the ICANN Whois Inaccuracy Complaint Form: https://www.icann.org/wicf/",
              ">>> Last update of WHOIS database: 2025-11-23T00:00:00Z <<<", ""]
    return "\n".join(lines)


def rir_answer(q: str) -> str:
    return ("#\n# ProbeOps Lab RIR WHOIS data\n#\n\n"
            "NetRange:       198.18.0.0 - 198.19.255.255\nCIDR:           198.18.0.0/15\n"
            "NetName:        SPECIAL-IPV4-BENCHMARK-TESTING-IANA-RESERVED\nNetType:        IANA Special Use\n"
            "OrgName:        ProbeOps Lab RIR\nRegDate:        2005-01-01\nUpdated:        2024-05-24\n\n"
            if ":" not in q else
            "#\n# ProbeOps Lab RIR WHOIS data\n#\n\nNetRange:       FD00:: - FDFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF\n"
            "CIDR:           fd00::/8\nNetName:        UNIQUE-LOCAL\nOrgName:        ProbeOps Lab RIR\n"
            "RegDate:        2005-01-01\nUpdated:        2024-05-24\n\n")


ANSWERS = {"root": root_answer, "registry": registry_answer, "registrar": registrar_answer,
           "rir": rir_answer}


def log(*parts):
    print(*parts, flush=True)


def make_whois_handler(role):
    class Handler(socketserver.StreamRequestHandler):
        timeout = 5

        def handle(self):
            try:
                line = self.rfile.readline(1024)
            except OSError:
                return
            q = line.decode("utf-8", "replace").strip()
            log(role, self.client_address[0], q)
            self.wfile.write(ANSWERS[role](q).replace("\n", "\r\n").encode())
    return Handler


class _TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _TCP6(_TCP):
    address_family = socket.AF_INET6


def rdap_domain(name: str):
    d = DOMAINS.get(name.lower().rstrip("."))
    if d is None:
        return None
    return {
        "rdapConformance": ["rdap_level_0", "icann_rdap_response_profile_1"],
        "objectClassName": "domain", "handle": d["id"], "ldhName": name.upper(),
        "status": [{"clientDeleteProhibited": "client delete prohibited",
                    "clientTransferProhibited": "client transfer prohibited",
                    "ok": "active"}.get(s, s) for s in d["status"]],
        "events": [{"eventAction": "registration", "eventDate": d["created"]},
                   {"eventAction": "expiration", "eventDate": d["expires"]},
                   {"eventAction": "last changed", "eventDate": d["updated"]},
                   {"eventAction": "last update of RDAP database", "eventDate": "2025-11-23T00:00:00Z"}],
        "entities": [{"objectClassName": "entity", "handle": d["iana_id"], "roles": ["registrar"],
                      "publicIds": [{"type": "IANA Registrar ID", "identifier": d["iana_id"]}],
                      "vcardArray": ["vcard", [["version", {}, "text", "4.0"],
                                               ["fn", {}, "text", d["registrar"]]]]}],
        "nameservers": [{"objectClassName": "nameserver", "ldhName": n} for n in d["ns"]],
        "secureDNS": {"delegationSigned": False},
        "notices": [{"title": "Terms of Use", "description": ["ProbeOps lab RDAP service."]}],
    }


class RDAPHandler(BaseHTTPRequestHandler):
    server_version = "ProbeOpsLabRDAP/1.0"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        log("rdap", self.client_address[0], self.path, self.headers.get("Host", ""))
        parts = self.path.split("?")[0].strip("/").split("/")
        body, code = {"errorCode": 404, "title": "Not Found"}, 404
        if len(parts) == 2 and parts[0] == "domain":
            obj = rdap_domain(parts[1])
            if obj is not None:
                body, code = obj, 200
        elif len(parts) == 2 and parts[0] == "redirect":  # -> same domain, tests redirect following
            self.send_response(302)
            self.send_header("Location", f"{RDAP_BASE}domain/{parts[1]}")
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/rdap+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _HTTP6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser()
    for role in ("root", "registry", "registrar", "rir", "rdap"):
        ap.add_argument(f"--{role}", action="append", default=[])
    args = ap.parse_args()
    servers = []
    for role in ("root", "registry", "registrar", "rir"):
        for addr in getattr(args, role):
            cls = _TCP6 if ":" in addr else _TCP
            servers.append(cls((addr, 43), make_whois_handler(role)))
    for addr in args.rdap:
        cls = _HTTP6 if ":" in addr else ThreadingHTTPServer
        cls.daemon_threads = True
        servers.append(cls((addr, 80), RDAPHandler))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log("ready", len(servers))
    try:
        sys.stdin.read()  # exit when the lab closes our stdin
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
