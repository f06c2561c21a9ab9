"""A tiny real nameserver for fault tests: every UDP query gets an empty answer with TC=1 set, and
the TCP retry that must follow is refused (nothing listens), closed without an answer, reset, or
left unanswered.  Sockets on loopback only; run it as a context manager."""
import socket
import struct
import threading

import dns.flags
import dns.message


class TruncatingNameserver:
    """``mode``: "refuse" (no TCP listener), "close" (read the query, then close: EOF), "reset"
    (accept, then abort: the client gets RST) or "silent" (accept, never answer)."""

    def __init__(self, mode, host="127.0.0.1", port=0):
        if mode not in ("refuse", "close", "reset", "silent"):
            raise ValueError(mode)
        self.mode, self.host = mode, host
        for _attempt in range(20):  # a free UDP port may be taken for TCP: try another one
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.tcp = None
            try:
                self.udp.bind((host, port))
                self.port = self.udp.getsockname()[1]
                if mode != "refuse":
                    self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    self.tcp.bind((host, self.port))
                    self.tcp.listen(8)
                break
            except OSError:
                self.udp.close()
                if self.tcp is not None:
                    self.tcp.close()
                if port:
                    raise
        else:
            raise OSError("no port free for both UDP and TCP")
        self.udp_queries = 0
        self.tcp_connections = 0
        self._held = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True)]
        if self.tcp is not None:
            self._threads.append(threading.Thread(target=self._serve_tcp, daemon=True))

    def _serve_udp(self):
        self.udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                wire, client = self.udp.recvfrom(4096)
            except (TimeoutError, OSError):
                continue
            query = dns.message.from_wire(wire)
            answer = dns.message.make_response(query)
            answer.flags |= dns.flags.TC | dns.flags.AA
            self.udp_queries += 1
            self.udp.sendto(answer.to_wire(), client)

    def _serve_tcp(self):
        self.tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            self.tcp_connections += 1
            if self.mode == "close":
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                finally:
                    conn.close()
            elif self.mode == "reset":  # linger 0: close sends RST at once
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self._held.append(conn)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for s in [self.udp, self.tcp, *self._held]:
            if s is not None:
                s.close()
