"""The operator's probe endpoints, served as controller-runtime serves them on `--health-probe-bind-address`.

- `/healthz` (liveness): kopf's event loop runs a no-op within `LOOP_TIMEOUT` seconds. A wedged
  loop (a handler blocking it) fails it, and the kubelet restarts the container.
- `/readyz` (readiness): kopf has started its watches (its ready flag), and the apiserver answered
  within the last `CONTACT_WINDOW` seconds: the leader election's reads and writes when it runs
  (a standby that is in contact is ready: it can take over), otherwise a `GET /version` made by the
  probe itself. The body says `leader`, `standby` or `running` (no election).

Both answer 200 with a one-line text body, or 503 saying what failed. Limits: a watch that stalls
while the apiserver still answers is not seen here; kopf restarts every watch after its server
timeout (120 s, set in handlers.configure), which bounds that case.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from elasticjob_operator.leader import LeaderElector

log = logging.getLogger(__name__)

LOOP_TIMEOUT = 5.0
CONTACT_WINDOW = 10.0


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """controller-runtime's form: `:8081`, `host:port`; `0` (or port 0) disables the endpoint."""
    if address in ("", "0"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address {address!r}: expected [host]:port, e.g. :8081, or 0 to disable")
    return (host.strip("[]") or "0.0.0.0", int(port)) if int(port) else None  # noqa: S104 (a pod serves its probes on its IP)


class Health:
    """What the probes check; `attach` is called on kopf's loop at start-up."""

    def __init__(self, ready: threading.Event, elector: LeaderElector | None, api: client.ApiClient | None) -> None:
        self.ready = ready
        self.elector = elector
        self._version = client.VersionApi(api) if api is not None and elector is None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._contact_at: float | None = None
        self._lock = threading.Lock()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def live(self) -> tuple[bool, str]:
        loop = self._loop
        if loop is None:
            return True, "starting"  # kopf has not run its start-up yet: the loop is still being made
        try:
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=LOOP_TIMEOUT)
        except Exception as exc:
            return False, f"kopf's event loop did not answer in {LOOP_TIMEOUT:g} s ({type(exc).__name__})"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if not self.ready.is_set():
            return False, "kopf has not started its watches yet"
        if self.elector is not None:
            if not self.elector.in_contact():
                return False, f"the apiserver has not answered the leader election for {CONTACT_WINDOW:g} s"
            return True, "leader" if self.elector.leading() else f"standby (leader: {self.elector.holder() or '-'})"
        if not self._apiserver_answers():
            return False, f"the apiserver has not answered for {CONTACT_WINDOW:g} s"
        return True, "running"

    def _apiserver_answers(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self._contact_at is not None and now - self._contact_at < CONTACT_WINDOW / 2:
                return True
            if self._version is None:
                return True
            try:
                self._version.get_code(_request_timeout=2)
            except Exception:
                return self._contact_at is not None and now - self._contact_at < CONTACT_WINDOW
            self._contact_at = time.monotonic()
            return True


def serve(health: Health, address: tuple[str, int]) -> ThreadingHTTPServer:
    """Serve /healthz and /readyz on a daemon thread; the server is returned for shutdown."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/livez"):
                ok, text = health.live()
            elif path == "/readyz":
                ok, text = health.readiness()
            else:
                self.send_error(404)
                return
            body = f"{text}\n".encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds would drown the operator's log

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("probes on http://%s:%d/healthz and /readyz", *address)
    return server
