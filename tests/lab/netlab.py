"""A network-namespace lab for the probe engines (needs root, iproute2, nftables, bind9).

Topology (all in 198.18.0.0/16 and fd00:198:18::/48; nothing else is routed into the lab)::

    root ns                 probeops-r1            probeops-r2          probeops-r3          probeops-tgt
    po-h0 198.18.0.1 ---- 198.18.0.2 [r1] 198.18.1.1 ---- 198.18.1.2 [r2] 198.18.2.1 ---- 198.18.2.2 [r3] 198.18.3.1 ---- 198.18.3.10  target
          fd00:198:18::1     fd00:198:18::2       :1::1             :1::2       :2::1           :2::2        :3::1        198.18.3.20  lossy (50% echo drop, nft numgen)
                                  |                                                                                      198.18.3.99  silent (nft drop all)
                                  | 198.18.10.1                                                                          fd00:198:18:3::10/::20/::99
                                  |                                                                         [r3] 198.18.4.1 ---- 198.18.4.10  late (probeops-late)
                                  |                                                                     fd00:198:18:4::1         fd00:198:18:4::10
                             probeops-svc 198.18.10.53 named (bind9)  .43 WHOIS root  .44 registry  .45 registrar
                                          .46 RIR WHOIS  .80 RDAP (HTTP)      fd00:198:18:10::53 ...

From the root namespace the target (and the late host) is 4 hops away: r1 (198.18.0.2),
r2 (198.18.1.2), r3 (198.18.2.2), target.  ICMP rate limits are off inside the lab so a reference
tool and an engine can trace at the same moment.  ``tc netem`` delay is added on r2->r3 when the kernel has
it (``Lab.netem``); loss always uses nftables ``numgen random mod 2`` drops.  Late echo replies
(which netem would otherwise give) come from ``late_echo.py``: in ``probeops-late`` the kernel
ignores echo requests and that process answers them from a raw socket ``Lab.late_delay`` s later.

Usage::

    lab = Lab(); lab.up()          # cleans leftovers of a crashed run first
    lab.verify_routes()            # refuses to go on unless every lab address routes via po-h0
    ...
    lab.down()                     # namespaces, veths, nft tables, named, WHOIS/RDAP servers, late_echo
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.reversename

HERE = Path(__file__).resolve().parent
PREFIX = "probeops-"
HOST_IF = "po-h0"
LAB_NET4 = ipaddress.ip_network("198.18.0.0/16")
LAB_NET6 = ipaddress.ip_network("fd00:198:18::/48")
ZONE = "probeops.test"
LOCK_FILE = "/run/lock/probeops-lab.lock" if os.path.isdir("/run/lock") else "/tmp/probeops-lab.lock"
LOCK_WAIT = float(os.environ.get("PROBEOPS_LAB_LOCK_WAIT", "240"))
# Safety net in the root namespace while a lab exists: if the lab's veth disappears, packets for
# lab addresses hit these and fail locally instead of leaking out of the default route.
GUARD_ROUTES = [("-4", "198.18.0.0/15"), ("-6", "fd00:198:18::/48")]


class LabError(RuntimeError):
    pass


def _run(*cmd, check=True, input=None, timeout=20):
    p = subprocess.run(list(cmd), capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


class Lab:
    """The lab.  Addresses (strings) as attributes:

    ``host_ip``/``host_ip6``  the root namespace's side (probes come from here)
    ``hops``/``hops6``        the router addresses a trace to the target shows, in order
    ``target``/``target6``    the target, ``len(hops) + 1`` hops away; answers ping, UDP gets port unreachable
    ``lossy``/``lossy6``      same host, but 50 % of echo requests to it are dropped (nft numgen)
    ``silent``/``silent6``    configured on the target but every packet to it is dropped (never answers)
    ``unreachable``/``unreachable6``  r3 (``hops[-1]``) answers ICMP host / address unreachable (nft reject)
    ``duplicating``/``duplicating6``  on the target; every echo reply from it is duplicated (nft dup)
    ``late``/``late6``        own namespace behind r3 (as far away as the target); the kernel ignores
                              echo requests there and ``late_echo.py`` answers each ``late_delay``
                              (1.0) seconds after it arrived, same id/seq/payload
    ``dns``/``dns6``          bind9 ``named`` authoritative (recursion off) for ``zone``
    ``zone``                  "probeops.test"; ``records`` lists some of its (name, type, value)
    ``broken_zone``           a zone named loads with errors -> SERVFAIL;  any other name -> REFUSED
    ``whois_root``            IANA-like WHOIS: refers "*.test" to ``whois_registry``, IPs to ``whois_rir``
    ``whois_registry``/``whois_registrar``/``whois_rir``   the port-43 servers behind it
    ``rdap``                  the RDAP server (HTTP port 80, name rdap.probeops.test)
    ``rdap_bootstrap``        path of an IANA-format dns.json bootstrap file (ipv4.json, ipv6.json beside it)
    ``allowed_networks``      "198.18.0.0/16,fd00:198:18::/48" (PROBE_ALLOWED_NETWORKS for the lab)
    ``allowed_domains``       "test" (PROBE_ALLOWED_DOMAINS for the lab: its names are under .test)
    ``whois_domains``         domains the lab WHOIS/RDAP know: example.test (full chain), thin.test,
                              evil.test (registrar server resolves to 10.1.2.3), loop.test (loop)
    """

    namespaces = [PREFIX + n for n in ("r1", "r2", "r3", "tgt", "svc", "late")]
    host_ip, host_ip6 = "198.18.0.1", "fd00:198:18::1"
    hops = ["198.18.0.2", "198.18.1.2", "198.18.2.2"]
    hops6 = ["fd00:198:18::2", "fd00:198:18:1::2", "fd00:198:18:2::2"]
    target, target6 = "198.18.3.10", "fd00:198:18:3::10"
    lossy, lossy6 = "198.18.3.20", "fd00:198:18:3::20"
    silent, silent6 = "198.18.3.99", "fd00:198:18:3::99"
    unreachable, unreachable6 = "198.18.3.77", "fd00:198:18:3::77"   # r3 rejects: ICMP host unreachable
    duplicating, duplicating6 = "198.18.3.30", "fd00:198:18:3::30"   # every echo reply sent twice (nft dup)
    late, late6 = "198.18.4.10", "fd00:198:18:4::10"   # echo replies sent late_delay s late (late_echo.py)
    late_delay = 1.0
    dns, dns6 = "198.18.10.53", "fd00:198:18:10::53"
    whois_root, whois_root6 = "198.18.10.43", "fd00:198:18:10::43"
    whois_registry, whois_registrar, whois_rir = "198.18.10.44", "198.18.10.45", "198.18.10.46"
    rdap = "198.18.10.80"
    zone = ZONE
    broken_zone = "broken.test"
    allowed_networks = f"{LAB_NET4},{LAB_NET6}"
    allowed_domains = "test"   # every lab name is under .test (RFC 6761), refused unless allowed
    whois_domains = ["example.test", "thin.test", "evil.test", "loop.test"]
    big_txt_count = 12
    records = [
        (f"www.{ZONE}.", "A", "198.18.3.10"), (f"www.{ZONE}.", "AAAA", "fd00:198:18:3::10"),
        (f"target.{ZONE}.", "A", "198.18.3.10"), (f"target.{ZONE}.", "AAAA", "fd00:198:18:3::10"),
        (f"v6only.{ZONE}.", "AAAA", "fd00:198:18:3::10"),
        (f"alias.{ZONE}.", "CNAME", f"www.{ZONE}."),
        (f"{ZONE}.", "MX", f"10 mail.{ZONE}."), (f"{ZONE}.", "MX", f"20 mail2.{ZONE}."),
        (f"{ZONE}.", "TXT", '"v=spf1 -all"'), (f"{ZONE}.", "CAA", '0 issue "letsencrypt.org"'),
        (f"_sip._tcp.{ZONE}.", "SRV", f"10 60 5060 www.{ZONE}."),
        (f"private.{ZONE}.", "A", "10.1.2.3"),
        (f"xn--bcher-kva.{ZONE}.", "A", "198.18.3.10"),   # bücher.probeops.test
    ]

    def __init__(self):
        self._lock_fd = None
        self.tmp: Path | None = None
        self.procs: list[subprocess.Popen] = []
        self.netem = False
        self.is_up = False
        self.rdap_bootstrap = None
        self.server_log = None
        self.late_log = None
        self._late_ready = None

    # ------------------------------------------------------------------ helpers
    def nsexec(self, ns, *cmd, check=True, timeout=20):
        return _run("ip", "netns", "exec", ns, *cmd, check=check, timeout=timeout)

    @staticmethod
    def available() -> str | None:
        """None when a lab can be built here, else the reason it cannot."""
        if os.geteuid() != 0:
            return "the network lab needs root (ip netns)"
        for tool in ("ip", "nft", "named"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                return f"the network lab needs `{tool}` (apt-get install iproute2 nftables bind9)"
        p = subprocess.run(["ip", "netns", "list"], capture_output=True)
        if p.returncode != 0:
            return "`ip netns` is not usable here"
        return None

    # ------------------------------------------------------------------ cleanup
    @classmethod
    def cleanup_leftovers(cls):
        """Remove everything a previous (crashed) run may have left: probeops-* namespaces,
        the processes running in them, the host veth."""
        p = _run("ip", "netns", "list", check=False)
        for line in p.stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(PREFIX):
                pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                _run("ip", "netns", "del", name, check=False)
        _run("ip", "link", "del", HOST_IF, check=False)
        for fam, net in GUARD_ROUTES:
            while _run("ip", fam, "route", "del", "unreachable", net, "metric", "4000",
                       check=False).returncode == 0:
                pass

    # ------------------------------------------------------------------ build
    def _lock(self):
        """One lab per machine at a time: sessions (this suite, the API suite) take turns."""
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LabError(f"another test session holds the lab ({LOCK_FILE}) for more than {LOCK_WAIT:g}s") from None
                time.sleep(0.2)
        self._lock_fd = fd

    def _unlock(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def up(self):
        reason = self.available()
        if reason:
            raise LabError(reason)
        self._lock()  # only the lock holder may clean up or build: never tear down a live lab
        self.cleanup_leftovers()
        try:
            self._build()
            self.is_up = True
        except BaseException:
            self.down()
            raise
        return self

    def _build(self):
        t0 = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="probeops-lab-"))
        for fam, net in GUARD_ROUTES:
            _run("ip", fam, "route", "add", "unreachable", net, "metric", "4000")
        for ns in self.namespaces:
            _run("ip", "netns", "add", ns)
        sysctls = ["net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                   "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000",
                   "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                   "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                   "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
        for ns in self.namespaces:
            for s in sysctls:  # one by one: some may be global-only on this kernel
                self.nsexec(ns, "sysctl", "-qw", s, check=False)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        batch_root, batch = [], {ns: [] for ns in self.namespaces}
        r1, r2, r3, tgt, svc, late = self.namespaces
        for s in ("net.ipv4.icmp_echo_ignore_all=1", "net.ipv6.icmp.echo_ignore_all=1"):
            self.nsexec(late, "sysctl", "-qw", s)   # only late_echo.py answers there

        def link(a_ns, a_if, b_ns, b_if, a4, b4, a6, b6, plen4):
            if a_ns is None:
                _run("ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns)
                batch_root.extend([f"addr add {a4}/{plen4} dev {a_if}",
                                   f"addr add {a6}/64 dev {a_if} nodad", f"link set {a_if} up"])
            else:
                _run("ip", "-n", a_ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
                     "netns", b_ns)
                batch[a_ns].extend([f"addr add {a4}/{plen4} dev {a_if}",
                                    f"addr add {a6}/64 dev {a_if} nodad", f"link set {a_if} up"])
            batch[b_ns].extend([f"addr add {b4}/{plen4} dev {b_if}",
                                f"addr add {b6}/64 dev {b_if} nodad", f"link set {b_if} up"])

        link(None, HOST_IF, r1, "po-r1h", "198.18.0.1", "198.18.0.2", "fd00:198:18::1", "fd00:198:18::2", 30)
        link(r1, "po-r1b", r2, "po-r2a", "198.18.1.1", "198.18.1.2", "fd00:198:18:1::1", "fd00:198:18:1::2", 30)
        link(r2, "po-r2b", r3, "po-r3a", "198.18.2.1", "198.18.2.2", "fd00:198:18:2::1", "fd00:198:18:2::2", 30)
        link(r3, "po-r3b", tgt, "po-tgt", "198.18.3.1", "198.18.3.10", "fd00:198:18:3::1", "fd00:198:18:3::10", 24)
        link(r3, "po-r3c", late, "po-late", "198.18.4.1", self.late, "fd00:198:18:4::1", self.late6, 24)
        link(r1, "po-r1s", svc, "po-svc", "198.18.10.1", "198.18.10.53", "fd00:198:18:10::1",
             "fd00:198:18:10::53", 24)
        for a in (self.lossy, self.silent, self.duplicating):
            batch[tgt].append(f"addr add {a}/24 dev po-tgt")
        for a in (self.lossy6, self.silent6, self.duplicating6):
            batch[tgt].append(f"addr add {a}/64 dev po-tgt nodad")
        for last in ("43", "44", "45", "46", "80"):
            batch[svc].append(f"addr add 198.18.10.{last}/24 dev po-svc")
            batch[svc].append(f"addr add fd00:198:18:10::{last}/64 dev po-svc nodad")
        batch[r1] += ["route add 198.18.2.0/23 via 198.18.1.2", "route add 198.18.4.0/24 via 198.18.1.2",
                      "route add fd00:198:18:2::/63 via fd00:198:18:1::2",
                      "route add fd00:198:18:4::/64 via fd00:198:18:1::2"]
        batch[r2] += ["route add default via 198.18.1.1", "route add 198.18.3.0/24 via 198.18.2.2",
                      "route add 198.18.4.0/24 via 198.18.2.2",
                      "route add default via fd00:198:18:1::1",
                      "route add fd00:198:18:3::/64 via fd00:198:18:2::2",
                      "route add fd00:198:18:4::/64 via fd00:198:18:2::2"]
        batch[r3] += ["route add default via 198.18.2.1", "route add default via fd00:198:18:2::1"]
        batch[tgt] += ["route add default via 198.18.3.1", "route add default via fd00:198:18:3::1"]
        batch[svc] += ["route add default via 198.18.10.1", "route add default via fd00:198:18:10::1"]
        batch[late] += ["route add default via 198.18.4.1", "route add default via fd00:198:18:4::1"]
        batch_root += [f"route add {LAB_NET4} via 198.18.0.2 dev {HOST_IF}",
                       f"route add {LAB_NET6} via fd00:198:18::2 dev {HOST_IF}"]
        for ns, cmds in batch.items():
            _run("ip", "-n", ns, "-batch", "-", input="\n".join(cmds) + "\n")
        _run("ip", "-batch", "-", input="\n".join(batch_root) + "\n")
        # loss / silence with nftables in the target namespace
        nft = f"""
table inet probeops_lab {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip daddr {self.silent} drop
    ip6 daddr {self.silent6} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept
    ip6 daddr {self.silent6} drop
    ip daddr {self.lossy} icmp type echo-request numgen random mod 2 == 0 drop
    ip6 daddr {self.lossy6} icmpv6 type echo-request numgen random mod 2 == 0 drop
  }}
}}
table ip probeops_dup {{
  chain output {{
    type filter hook output priority 0; policy accept;
    ip saddr {self.duplicating} icmp type echo-reply dup to 198.18.3.1 device "po-tgt"
  }}
}}
table ip6 probeops_dup {{
  chain output {{
    type filter hook output priority 0; policy accept;
    ip6 saddr {self.duplicating6} icmpv6 type echo-reply dup to fd00:198:18:3::1 device "po-tgt"
  }}
}}
"""
        (self.tmp / "lab.nft").write_text(nft)
        self.nsexec(tgt, "nft", "-f", str(self.tmp / "lab.nft"))
        # (r3's own "no route" errors are rate-limited by the global net.ipv4.route.error_cost,
        # so unreachables come from an nft reject rule, which is limited only by icmp_ratelimit)
        (self.tmp / "r3.nft").write_text(f"""
table inet probeops_lab {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ip daddr {self.unreachable} reject with icmp type host-unreachable
    ip6 daddr {self.unreachable6} reject with icmpv6 type addr-unreachable
  }}
}}
""")
        self.nsexec(r3, "nft", "-f", str(self.tmp / "r3.nft"))
        # delay where the kernel has netem (it often does not in CI kernels)
        p = self.nsexec(r2, "tc", "qdisc", "add", "dev", "po-r2b", "root", "netem", "delay", "2ms",
                        check=False)
        self.netem = p.returncode == 0
        self.verify_routes()
        self._start_named()
        self._start_servers()
        self._start_late_echo()
        self._wait_ready()
        self.setup_seconds = time.monotonic() - t0

    # ------------------------------------------------------------------ DNS
    def _zone_text(self):
        big = "\n".join(f'big IN TXT "{i:02d} ' + "x" * 180 + '"' for i in range(self.big_txt_count))
        return f"""$TTL 300
@       IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 2025112301 3600 600 86400 300
@       IN NS  ns1.{ZONE}.
@       IN MX  10 mail.{ZONE}.
@       IN MX  20 mail2.{ZONE}.
@       IN TXT "v=spf1 -all"
@       IN CAA 0 issue "letsencrypt.org"
ns1     IN A    {self.dns}
ns1     IN AAAA {self.dns6}
mail    IN A    {self.target}
mail2   IN A    {self.target}
www     IN A    {self.target}
www     IN AAAA {self.target6}
target  IN A    {self.target}
target  IN AAAA {self.target6}
v6only  IN AAAA {self.target6}
lossy   IN A    {self.lossy}
silent  IN A    {self.silent}
alias   IN CNAME www
_sip._tcp IN SRV 10 60 5060 www
private IN A    10.1.2.3
rebind  IN A    {self.target}
rebind  IN A    127.0.0.1
xn--bcher-kva IN A {self.target}
whois   IN A    {self.whois_root}
whois   IN AAAA {self.whois_root6}
whois.nic IN A  {self.whois_registry}
whois.registrar IN A {self.whois_registrar}
whois.rir IN A  {self.whois_rir}
whois.private IN A 10.1.2.3
rdap    IN A    {self.rdap}
{big}
"""

    def _start_named(self):
        d = self.tmp / "named"
        d.mkdir()
        (d / "zone.db").write_text(self._zone_text())
        rev4 = ["$TTL 300", f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300",
                f"@ IN NS ns1.{ZONE}."]
        for ip, name in ((self.target, f"www.{ZONE}."), (self.dns, f"ns1.{ZONE}."),
                         (self.target6, f"www.{ZONE}.")):
            rev4.append(f"{dns.reversename.from_address(ip).to_text()} IN PTR {name}")
        (d / "rev.db").write_text("\n".join(rev4) + "\n")
        (d / "broken.db").write_text("$TTL 300\n@ IN SOA this is not a valid zone\n")
        conf = f"""
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port 53 {{ {self.dns}; }};
    listen-on-v6 port 53 {{ {self.dns6}; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
    minimal-responses no;
}};
controls {{ }};
zone "{ZONE}" {{ type primary; file "{d}/zone.db"; }};
zone "18.198.in-addr.arpa" {{ type primary; file "{d}/rev.db"; }};
zone "8.1.0.0.8.9.1.0.0.0.d.f.ip6.arpa" {{ type primary; file "{d}/rev.db"; }};
zone "{self.broken_zone}" {{ type primary; file "{d}/broken.db"; }};
"""
        (d / "named.conf").write_text(conf)
        named = shutil.which("named") or "/usr/sbin/named"
        with open(d / "named.log", "w") as log:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.namespaces[4], named, "-g", "-n", "1", "-c", str(d / "named.conf")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))

    def _start_servers(self):
        self.server_log = self.tmp / "servers.log"
        args = [sys.executable, "-u", str(HERE / "servers.py"),
                "--root", self.whois_root, "--root", self.whois_root6,
                "--registry", self.whois_registry, "--registrar", self.whois_registrar,
                "--rir", self.whois_rir, "--rdap", self.rdap]
        with open(self.server_log, "w") as log:
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.namespaces[4], *args],
                                               stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.PIPE, start_new_session=True))
        boot = self.tmp / "rdap"
        boot.mkdir()
        base = f"http://rdap.{ZONE}/"
        (boot / "dns.json").write_text(json.dumps({
            "description": "ProbeOps lab RDAP bootstrap (IANA format, RFC 9224)",
            "publication": "2025-11-23T00:00:00Z", "version": "1.0",
            "services": [[["test"], [base]]]}))
        (boot / "ipv4.json").write_text(json.dumps({
            "publication": "2025-11-23T00:00:00Z", "version": "1.0",
            "services": [[["198.18.0.0/15"], [base]]]}))
        (boot / "ipv6.json").write_text(json.dumps({
            "publication": "2025-11-23T00:00:00Z", "version": "1.0", "services": []}))
        self.rdap_bootstrap = str(boot / "dns.json")

    def _start_late_echo(self):
        self.late_log = self.tmp / "late_echo.log"
        self._late_ready = self.tmp / "late_echo.ready"
        args = [sys.executable, "-u", str(HERE / "late_echo.py"), "--delay", str(self.late_delay),
                "--ready", str(self._late_ready), self.late, self.late6]
        with open(self.late_log, "w") as log:
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.namespaces[5], *args],
                                               stdout=log, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))

    def _wait_ready(self, timeout=10.0):
        import dns.message
        import dns.query
        deadline = time.monotonic() + timeout
        pending = {("tcp", a, 43) for a in (self.whois_root, self.whois_registry, self.whois_registrar,
                                            self.whois_rir)} | {("tcp", self.rdap, 80), ("dns", self.dns, 53)}
        pending.add(("file", str(self._late_ready), 0))
        while pending and time.monotonic() < deadline:
            for item in list(pending):
                kind, addr, port = item
                try:
                    if kind == "file":
                        if os.path.exists(addr):
                            pending.discard(item)
                    elif kind == "dns":
                        q = dns.message.make_query(f"www.{ZONE}", "A")
                        r = dns.query.udp(q, addr, timeout=0.3)
                        if r.answer:
                            pending.discard(item)
                    else:
                        with socket.create_connection((addr, port), timeout=0.3):
                            pending.discard(item)
                except Exception:
                    pass
            for p in self.procs:
                if p.poll() is not None:
                    raise LabError(f"lab server exited early: {p.args} (see {self.tmp})")
            if pending:
                time.sleep(0.05)
        if pending:
            raise LabError(f"lab services not ready: {sorted(pending)} (logs in {self.tmp})")

    # ------------------------------------------------------------------ safety
    def lab_addresses(self):
        return [*self.hops, *self.hops6, self.target, self.target6, self.lossy, self.lossy6,
                self.silent, self.silent6, self.unreachable, self.unreachable6, self.duplicating, self.duplicating6,
                self.late, self.late6, self.dns, self.dns6, self.whois_root, self.whois_root6,
                self.whois_registry, self.whois_registrar, self.whois_rir, self.rdap]

    def verify_routes(self, addresses=None):
        """Run ``ip route get`` for every lab address; raise LabError unless each goes out po-h0
        into the lab (or is inside the lab ranges and local)."""
        for a in addresses or self.lab_addresses():
            ip = ipaddress.ip_address(a)
            if ip not in LAB_NET4 and ip not in LAB_NET6:
                raise LabError(f"{a} is not a lab address")
            p = _run("ip", "-j", "route", "get", a, check=False)
            if p.returncode != 0:
                raise LabError(f"no route to lab address {a}: {p.stderr.strip()}")
            routes = json.loads(p.stdout or "[]")
            if not routes or routes[0].get("dev") != HOST_IF:
                raise LabError(f"route to {a} does not go into the lab: {p.stdout.strip()}")
        return True

    # ------------------------------------------------------------------ teardown
    def down(self):
        """Tear everything down.  A Lab that does not hold the lock owns nothing and does nothing."""
        if self._lock_fd is None:
            return
        for p in self.procs:
            if p.poll() is None:
                try:
                    if p.stdin:
                        p.stdin.close()
                    os.killpg(p.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError, OSError):
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=3)
        self.procs = []
        for ns in self.namespaces:
            pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # anything we started in the lab that outlived its parent
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", HOST_IF, check=False)
        for fam, net in GUARD_ROUTES:  # the safety routes go only once the lab is gone
            _run("ip", fam, "route", "del", "unreachable", net, "metric", "4000", check=False)
        self.is_up = False
        self._unlock()
        if self.tmp and os.environ.get("PROBEOPS_LAB_KEEP_LOGS") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def server_requests(self):
        """Lines the WHOIS/RDAP servers logged: '<role> <client> <query>'."""
        try:
            return self.server_log.read_text().splitlines()
        except (OSError, AttributeError):
            return []

    def guard(self):
        """A WHOIS guard for the lab: resolve with the lab DNS, allow only lab networks."""
        from app.probes.targets import parse_networks, resolve_target
        nets = parse_networks(self.allowed_networks)

        def guard(host):
            return resolve_target(host, allowed_networks=nets, nameservers=[self.dns], timeout=2.0,
                                  allowed_domains=(self.allowed_domains,)).address
        return guard

    def late_requests(self):
        """Lines late_echo.py logged: '<client> id=<id> seq=<seq>' per echo request it answers."""
        try:
            return self.late_log.read_text().splitlines()
        except (OSError, AttributeError):
            return []

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


if __name__ == "__main__":  # python -m tests.lab.netlab: build, show, wait for Enter, tear down
    lab = Lab()
    lab.up()
    print(f"lab up in {lab.setup_seconds:.2f}s, netem={lab.netem}, tmp={lab.tmp}")
    try:
        input("press Enter to tear down ")
    finally:
        lab.down()
