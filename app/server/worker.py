"""``BufferedThreadWorker``: Gunicorn's gthread worker, but no thread waits on a client's bytes.

The main loop (one ``selectors`` poller per worker) reads every request, head and body, into a
buffer with non-blocking sockets; only a complete request goes to the thread pool, which runs the
Flask app and writes the answer. A slow or idle connection costs a buffer and a poller entry, not
a thread. Each connection has a deadline for its head and one for its body, requests larger than
the limits are answered 431/414/413 without reading further, and when the worker holds more
connections than ``--worker-connections`` the one idle the longest is closed. Gunicorn's own error
answers are the contract's JSON. On SIGTERM the worker stops listening at once (so new
connections are refused once every worker has), answers 503 to requests it has only partly read,
lets the requests in its threads finish, and marks the process as shutting down for readiness.
docs/server.md explains the choice.
"""
import errno
import selectors
import socket
import struct
import time
from functools import partial

from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import TConn, ThreadWorker

from app.lifecycle import begin_shutdown
from app.server.framing import HEAD_END, Complete, Incomplete, Limits, Refused, frame
from app.server.responses import json_error

# Connections accepted per readable event on a listener. Small: every idle worker wakes for a burst
# of new connections, and each takes a few per turn of its loop, so they spread over the workers
# instead of the first to wake taking up to 64 (its threads full, the rest waiting in its queue
# while other workers had threads free).
ACCEPT_BATCH = 4
RECV_SIZE = 65536
LINGER_SECONDS = 2.0           # how long a closing connection is drained before it is closed
LINGER_MAX_BYTES = 65536
SWEEP_INTERVAL = 0.25          # deadlines are checked this often (their precision)
SHUTDOWN_RETRY_AFTER = "5"
DEFAULTS = {"SERVER_HEADER_TIMEOUT": 10.0, "SERVER_BODY_TIMEOUT": 30.0, "SERVER_IO_TIMEOUT": 30.0,
            "SERVER_MAX_HEADER_BYTES": 65536, "MAX_CONTENT_LENGTH": 64 * 1024}

# Gunicorn's parse errors -> (status, message, code) of the contract.
PARSE_ERRORS = [
    (http_errors.LimitRequestLine, 414, "The request line is too long", "bad_request"),
    (http_errors.LimitRequestHeaders, 431, "The request header fields are too large", "bad_request"),
    (http_errors.UnsupportedTransferCoding, 501, "Unsupported Transfer-Encoding: only chunked is accepted",
     "bad_request"),
    (http_errors.ExpectationFailed, 417, "Unsupported Expect header: only 100-continue is accepted", "bad_request"),
    (http_errors.ForbiddenProxyRequest, 403, "Request forbidden", "forbidden"),
    (http_errors.InvalidRequestLine, 400, "Invalid request line", "bad_request"),
    (http_errors.InvalidRequestMethod, 400, "Invalid request method", "bad_request"),
    (http_errors.InvalidHTTPVersion, 400, "Unsupported HTTP version", "bad_request"),
    (http_errors.InvalidHeaderName, 400, "Invalid header name", "bad_request"),
    (http_errors.InvalidHeader, 400, "Invalid header", "bad_request"),
    (http_errors.ObsoleteFolding, 400, "Obsolete header line folding is not accepted", "bad_request"),
    (http_errors.InvalidChunkSize, 400, "Invalid chunked body", "bad_request"),
    (http_errors.ChunkMissingTerminator, 400, "Invalid chunked body", "bad_request"),
    (http_errors.InvalidChunkExtension, 400, "Invalid chunked body", "bad_request"),
    (http_errors.InvalidSchemeHeaders, 400, "Contradictory scheme headers", "bad_request"),
    (http_errors.InvalidProxyLine, 400, "Invalid PROXY protocol line", "bad_request"),
    (http_errors.ParseException, 400, "Malformed HTTP request", "bad_request"),
]
QUIET_OS_ERRORS = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EAGAIN, errno.ETIMEDOUT)


class Conn(TConn):
    """A client connection and what has arrived of its next request."""

    def __init__(self, cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.deadline = 0.0
        self.last_activity = time.monotonic()
        self.closing_until = None
        self.drained = 0
        self.reset_request()

    def reset_request(self):
        self.inbuf = bytearray()
        self.head_done = False
        self.line_checked = False
        self.need = 0
        self.sent_continue = False


def peer(conn):
    """The client's address for log lines."""
    return conn.client[0] if conn.client else "-"


def parse_error_answer(exc):
    """(status, message, code) for one of Gunicorn's parse errors, or None if it is not one."""
    if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
        return None  # the app's fault, not the client's
    for cls, status, message, code in PARSE_ERRORS:
        if isinstance(exc, cls):
            return status, message, code
    return None


class BufferedThreadWorker(ThreadWorker):
    """gthread with buffered, deadline-bounded request reading in the poller."""

    @classmethod
    def check_config(cls, cfg, log):
        if cfg.is_ssl:
            raise RuntimeError("BufferedThreadWorker serves plain HTTP: terminate TLS at the reverse proxy")
        super().check_config(cfg, log)

    def init_process(self):
        self.waiting = set()       # connections whose next request is being read
        self.lingering = set()     # connections being closed (write side shut, draining)
        self.in_flight = 0         # requests in the thread pool
        self.refusing = False      # SIGTERM: answer 503 instead of serving
        self.listening = True      # False once draining: accepting never resumes
        self.next_sweep = 0.0
        super().init_process()     # loads the app (unless preloaded) and calls run()

    def load_wsgi(self):
        super().load_wsgi()
        settings = dict(DEFAULTS)
        settings.update({k: v for k, v in getattr(self.wsgi, "config", {}).items() if k in DEFAULTS and v})
        self.header_timeout = float(settings["SERVER_HEADER_TIMEOUT"])
        self.body_timeout = float(settings["SERVER_BODY_TIMEOUT"])
        self.io_timeout = float(settings["SERVER_IO_TIMEOUT"])
        max_head = int(settings["SERVER_MAX_HEADER_BYTES"])
        self.limits = Limits(max_head=max_head, max_request_line=self.cfg.limit_request_line or max_head,
                             max_body=int(settings["MAX_CONTENT_LENGTH"]))
        self.wsgi = self.closing_when_draining(self.wsgi)

    def closing_when_draining(self, app):
        """The app, whose answers say ``Connection: close`` once SIGTERM came, even for requests that
        began before it (the connection will not take another request)."""
        def wsgi(environ, start_response):
            def start(status, headers, exc_info=None):
                response = getattr(start_response, "__self__", None)  # Gunicorn's Response
                if self.refusing and response is not None:
                    response.force_close()
                return start_response(status, headers, exc_info)
            return app(environ, start)
        return wsgi

    # -- signals -------------------------------------------------------------------------------

    def handle_exit(self, sig, frame):
        """SIGTERM: drain (refuse new requests, finish those in the threads)."""
        if self.alive:
            self.refusing = True
            begin_shutdown()
        super().handle_exit(sig, frame)

    # -- main loop -----------------------------------------------------------------------------

    def run(self):
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        self.set_accept_enabled(True)
        while self.alive:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=0.5)
            if not self.is_parent_alive():
                break
            self.sweep()
        self.drain()
        self.cleanup()

    def drain(self):
        """Let the requests in the thread pool finish, within the graceful timeout."""
        self.listening = False
        if self.refusing:
            self.stop_listening()
            for conn in list(self.waiting):
                if conn.inbuf:  # a request that arrived, partly, after the stop: refuse it
                    self.answer_and_close(conn, *self.shutdown_answer())
                else:
                    self.drop(conn)
        else:  # recycling (--max-requests): other workers take the new connections
            self.set_accept_enabled(False)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while (self.in_flight or self.waiting or self.lingering) and time.monotonic() < deadline:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=0.25)
            self.sweep()

    def cleanup(self):
        for conn in list(self.waiting) + list(self.lingering):
            self.drop(conn)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def stop_listening(self):
        """Close this worker's copy of the listening sockets: once every process has, the kernel
        refuses new connections instead of queueing them for nobody."""
        self.listening = False
        self.set_accept_enabled(False)
        for listener in self.sockets:
            listener.close()

    # -- reading requests ----------------------------------------------------------------------

    def accept(self, listener):
        if not self._accepting:  # an event polled before this turn's requests filled the threads
            return
        for _ in range(min(ACCEPT_BATCH, max(1, self.cfg.threads - self.in_flight))):
            try:
                client_sock, client_addr = listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED):
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.log.warning("accept: out of file descriptors, closing the longest idle connection")
                    self.evict_idlest()
                    return
                raise
            self.bound_blocking_io(client_sock)
            conn = Conn(self.cfg, client_sock, client_addr, listener.getsockname())
            if len(self.waiting) + self.in_flight >= self.worker_connections:
                self.evict_idlest()
            self.wait_for_request(conn, time.monotonic() + self.header_timeout)

    def accept_while_a_thread_is_free(self):
        """Accept new connections only while a thread is free: a worker whose threads are all busy
        leaves them to the other workers (with it, they would wait in its queue)."""
        if self.listening:
            self.set_accept_enabled(self.in_flight < self.cfg.threads)

    def bound_blocking_io(self, sock):
        """Kernel send/receive timeouts: they bound a thread's blocking writes (a client that reads
        its answer slowly) even where Gunicorn switches the socket back to blocking mode."""
        seconds = int(self.io_timeout)
        micros = int((self.io_timeout - seconds) * 1_000_000)
        value = struct.pack("ll", seconds, micros)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)

    def wait_for_request(self, conn, deadline):
        conn.sock.setblocking(False)
        conn.deadline = deadline
        conn.last_activity = time.monotonic()
        self.waiting.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))
        if conn.inbuf:  # pipelined bytes already read along with the previous request
            self.advance(conn)

    def on_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(conn)
            return
        if not data:
            self.drop(conn)
            return
        now = time.monotonic()
        if not conn.inbuf:  # first byte of a request on a kept-alive connection: the head clock starts
            conn.deadline = now + self.header_timeout
        conn.inbuf += data
        conn.last_activity = now
        if self.worth_framing(conn, len(data)):
            self.advance(conn)

    def worth_framing(self, conn, new_bytes):
        """Cheap test before framing again, so a request trickled byte by byte costs O(n), not O(n²)."""
        size = len(conn.inbuf)
        if conn.head_done:
            return size >= conn.need
        if HEAD_END in conn.inbuf[-(new_bytes + 3):] or size > self.limits.max_head:
            return True
        if not conn.line_checked and size > self.limits.max_request_line:
            conn.line_checked = True
            return True
        return False

    def advance(self, conn):
        result = frame(conn.inbuf, self.limits)
        if isinstance(result, Incomplete):
            if result.head_done and not conn.head_done:
                conn.head_done = True
                conn.deadline = time.monotonic() + self.body_timeout
                if result.expects_continue:
                    self.send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                    conn.sent_continue = True
            conn.need = result.need
        elif isinstance(result, Refused):
            self.log.warning("Refused request from ip=%s: %s", peer(conn), result.message,
                             extra={"status": result.status})
            self.answer_and_close(conn, result.status, result.message, result.code)
        elif isinstance(result, Complete):
            self.unwatch(conn)
            if self.refusing:
                self.log.info("Refused request from ip=%s: shutting down", peer(conn), extra={"status": 503})
                self.answer_and_close(conn, *self.shutdown_answer())
            else:
                self.dispatch(conn)

    def dispatch(self, conn):
        """Hand a complete request to the thread pool (its bytes preloaded into Gunicorn's parser)."""
        conn.init()
        conn.parser.unreader.unread(bytes(conn.inbuf))
        conn.inbuf = bytearray()
        self.in_flight += 1
        self.accept_while_a_thread_is_free()
        future = self.tpool.submit(self.handle, conn)
        future.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def shutdown_answer(self):
        return (503, "The server is shutting down: retry the request", "service_unavailable",
                {"Retry-After": SHUTDOWN_RETRY_AFTER})

    # -- deadlines and closing -----------------------------------------------------------------

    def sweep(self):
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_INTERVAL
        for conn in [c for c in self.waiting if c.deadline <= now]:
            if conn.inbuf:
                phase = "body" if conn.head_done else "head"
                self.log.info("Request %s not received in time from ip=%s", phase, peer(conn), extra={"status": 408})
                self.answer_and_close(conn, 408, f"The request {phase} was not received in time", "bad_request")
            else:
                self.drop(conn)  # idle kept-alive connection
        for conn in [c for c in self.lingering if c.closing_until <= now]:
            self.drop(conn)

    def evict_idlest(self):
        if self.waiting:
            self.drop(min(self.waiting, key=lambda c: c.last_activity))

    def answer_and_close(self, conn, status, message, code, headers=None):
        self.unwatch(conn)
        self.send_quietly(conn, json_error(status, message, code, headers))
        self.linger_close(conn)

    def send_quietly(self, conn, payload):
        """Best-effort non-blocking send of a small answer (the socket buffer is empty here)."""
        try:
            conn.sock.send(payload)
        except OSError:
            pass

    def linger_close(self, conn):
        """Shut our side, then read and discard what the client still sends (for LINGER_SECONDS at
        most) so its unread bytes do not make the kernel reset the connection over our answer."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
        except OSError:
            self.drop(conn)
            return
        conn.closing_until = time.monotonic() + LINGER_SECONDS
        conn.inbuf = bytearray()
        self.lingering.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering_readable, conn))

    def on_lingering_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > LINGER_MAX_BYTES:
            self.drop(conn)

    def unwatch(self, conn):
        self.waiting.discard(conn)
        self.lingering.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def drop(self, conn):
        self.unwatch(conn)
        conn.close()

    # -- in the thread pool --------------------------------------------------------------------

    def handle(self, conn):
        """Serve one complete, buffered request. Runs in a worker thread."""
        req = None
        try:
            conn.sock.setblocking(True)
            req = next(conn.parser)
            if not req:
                return False
            if conn.sent_continue:
                req._expected_100_continue = False  # the poller has already said 100 Continue
            keepalive = self.handle_request(req, conn)
            return keepalive and bool(conn.parser.finish_body(deadline=time.monotonic() + 1.0))
        except (http_errors.NoMoreData, StopIteration) as exc:
            self.log.debug("Closing connection: %r", exc)
        except OSError as exc:
            if exc.errno in QUIET_OS_ERRORS or isinstance(exc, TimeoutError):
                self.log.debug("Client connection error: %r", exc)
            else:
                self.log.exception("Socket error processing request.")
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
        return False

    def finish_request(self, conn, fs):
        """Back on the main loop: keep the connection for its next request, or close it."""
        self.in_flight -= 1
        self.accept_while_a_thread_is_free()
        try:
            keepalive = (not fs.cancelled()) and fs.result()
        except Exception:
            keepalive = False
        if not keepalive or self.refusing:
            self.linger_close(conn)
            return
        leftover = conn.parser.unreader.take_buffered()
        conn.reset_request()
        conn.inbuf += leftover
        now = time.monotonic()
        self.wait_for_request(conn, now + (self.header_timeout if leftover else self.cfg.keepalive))

    def handle_error(self, req, client, addr, exc):
        """Gunicorn's parse errors and unexpected failures, answered in the contract's JSON."""
        answer = parse_error_answer(exc)
        if answer:
            self.log.warning("Invalid request from ip=%s: %s", (addr or ("-",))[0], answer[1],
                             extra={"status": answer[0]})
        else:
            self.log.exception("Error handling request")
            answer = (500, "An internal error occurred", "internal_error")
        try:
            client.sendall(json_error(*answer))
        except OSError:
            self.log.debug("Failed to send error message.")
