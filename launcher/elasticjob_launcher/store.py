"""The rendezvous store: a c10d TCPStore server with a health endpoint, and how agents reach it.

`elasticjob-launch store` runs `serve()` in the store pod. It writes its generation under
`GENERATION_KEY` so agents learn which store incarnation they talk to (a recreated store starts
a fresh rendezvous). `wait_for_store()` is what worker-mode agents do first: retry DNS and TCP
until the store answers, with one log line every few seconds, instead of an nslookup init
container. Limits: the health endpoint answers plain HTTP on all interfaces; it exposes nothing
but 200/503.
"""

from __future__ import annotations

import http.server
import logging
import signal
import socket
import threading
import time
from datetime import timedelta
from types import FrameType

from torch.distributed import PrefixStore, Store, TCPStore

log = logging.getLogger(__name__)

GENERATION_KEY = "elasticjob/store-generation"
JOB_PREFIX = "elasticjob/job"


class StoreUnreachable(RuntimeError):
    """The store did not answer within the wait timeout."""


def open_server(host: str, port: int, generation: int) -> TCPStore:
    """Start a TCPStore server (libuv backend where available) and record its generation."""
    store = TCPStore(
        host_name=host,
        port=port,
        is_master=True,
        wait_for_workers=False,
        timeout=timedelta(seconds=60),
        use_libuv=True,
        multi_tenant=True,
    )
    store.set(GENERATION_KEY, str(generation))
    return store


def connect(host: str, port: int, timeout: float = 30.0) -> TCPStore:
    """A client connection to the store."""
    return TCPStore(host_name=host, port=port, is_master=False, timeout=timedelta(seconds=timeout))


def read_generation(store: Store) -> int:
    try:
        return int(store.get(GENERATION_KEY).decode())
    except (RuntimeError, ValueError):
        return 0


def tcp_answers(host: str, port: int) -> str | None:
    """None when a TCP connection to host:port succeeds, else why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"DNS: {exc}"
    reason = "no address"
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(2)
                sock.connect(addr)
                return None
        except OSError as exc:
            reason = f"connect {addr[0]!s}:{addr[1]!s}: {exc}"
    return reason


def wait_for_store(host: str, port: int, timeout: float, log_every: float = 5.0) -> TCPStore:
    """Retry DNS + TCP until the store answers, then return a client; `StoreUnreachable` on timeout."""
    deadline = time.monotonic() + timeout
    last_log = 0.0
    while True:
        reason = tcp_answers(host, port)
        if reason is None:
            try:
                return connect(host, port, timeout=min(30.0, max(1.0, deadline - time.monotonic())))
            except (RuntimeError, OSError) as exc:
                reason = f"store handshake: {exc}"
        now = time.monotonic()
        if now >= deadline:
            raise StoreUnreachable(f"rendezvous store {host}:{port} unreachable after {timeout:.0f}s: {reason}")
        if now - last_log >= log_every:
            log.info("waiting for the rendezvous store %s:%s (%s)", host, port, reason)
            last_log = now
        time.sleep(0.5)


def job_store(store: Store, run_id: str) -> PrefixStore:
    """The launcher's own keys (restart counters, drain marks) for one rendezvous run."""
    return PrefixStore(f"{JOB_PREFIX}/{run_id}", store)


class _Health(http.server.BaseHTTPRequestHandler):
    client: TCPStore | None = None
    lock = threading.Lock()

    def do_GET(self) -> None:
        ok = False
        try:
            with self.lock:
                if _Health.client is not None:
                    _Health.client.set("elasticjob/health", "1")
                    ok = _Health.client.get("elasticjob/health") == b"1"
        except RuntimeError:
            ok = False
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b"ok\n" if ok else b"store not answering\n")

    def log_message(self, format: str, *args: object) -> None:
        return


def serve(port: int, health_port: int | None, generation: int, host: str = "0.0.0.0") -> int:  # noqa: S104
    """Run the store until SIGTERM/SIGINT; returns the exit code."""
    server = open_server(host, port, generation)
    log.info("rendezvous store generation %d listening on %s:%d", generation, host, server.port)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    httpd = None
    if health_port is not None:
        _Health.client = connect("127.0.0.1", server.port)
        httpd = http.server.ThreadingHTTPServer((host, health_port), _Health)
        threading.Thread(target=httpd.serve_forever, daemon=True, name="health").start()
        log.info("health endpoint on :%d/healthz", health_port)
    stop.wait()
    if httpd is not None:
        httpd.shutdown()
    log.info("rendezvous store stopping")
    del server
    return 0
