"""The kubelet API of the fake nodes: what the API server calls for `kubectl logs`.

One HTTPS server on the nodes' address (`GATEWAY:10250`, the port every Node reports in
`status.daemonEndpoints`) serves all the agent's nodes, as the API server dials
`<InternalIP>:<port>` and every fake node shares the agent's address. It does what a kubelet
started with `--authentication-token-webhook=false --authorization-mode=Webhook` and a client CA
does:

1. **Authentication**: the TLS handshake requires a client certificate signed by the cluster's CA
   (the API server's `--kubelet-client-certificate`). The user is its CN, the groups its O's.
2. **Authorization**: a SubjectAccessReview for that user on the `nodes/proxy` subresource of
   the node the pod runs on (verb `get`), as the kubelet's webhook authorizer asks; the answers
   are cached for 30 s.
3. **`GET /containerLogs/{namespace}/{pod}/{container}`** with the kubelet's query parameters:
   `follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`, `previous`.
   Errors come back with the kubelet's status codes and messages (400 for an unknown container
   or a missing previous instance, 404 for an unknown pod).

The server's certificate is signed by the cluster CA with the nodes' IP, and the API server
verifies it (`--kubelet-certificate-authority`), as with a real kubelet.
Limits: `exec`, `attach`, `portForward` and the stats endpoints are not served (they need SPDY
or WebSocket streams and a container runtime); `follow` polls the file every 0.2 s.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from elasticjob_localcluster import containerlogs

log = logging.getLogger(__name__)
PORT = 10250
FOLLOW_POLL = 0.2
AUTHZ_TTL = 30.0


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PodRef:
    """What the server needs of a pod the agent knows: where it runs and its containers."""

    node: str
    uid: str
    containers: tuple[str, ...]


@dataclass(frozen=True)
class Backend:
    """The agent's side: the state dir, pod lookups, instance liveness, and authorization."""

    state: Path
    #: (namespace, pod) → the pod, or None if it is not on one of the agent's nodes
    find_pod: Callable[[str, str], PodRef | None]
    #: (uid, container, restart) → whether that container instance may still write
    running: Callable[[str, str, int], bool]
    #: (user, groups, node) → whether the user may `get nodes/proxy` on the node
    allowed: Callable[[str, tuple[str, ...], str], bool]


def parse_options(query: dict[str, list[str]], now: datetime) -> tuple[containerlogs.Options, bool]:
    """The kubelet's query parameters → (options, previous); a bad value is a 400."""

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    def flag(name: str) -> bool:
        value = one(name)
        return value is not None and value.lower() in ("true", "1", "")

    def integer(name: str) -> int | None:
        value = one(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer, not {value!r}") from None

    since = None
    seconds = integer("sinceSeconds")
    if seconds is not None:
        if seconds < 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, "sinceSeconds must be at least 1")
        since = now - timedelta(seconds=seconds)
    elif (text := one("sinceTime")) is not None:
        try:
            since = containerlogs.parse_stamp(text)
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"sinceTime must be RFC 3339, not {text!r}") from None
    try:
        options = containerlogs.Options(
            follow=flag("follow"),
            tail_lines=integer("tailLines"),
            since=since,
            timestamps=flag("timestamps"),
            limit_bytes=integer("limitBytes"),
        )
    except ValueError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, str(exc)) from None
    return options, flag("previous")


class AuthzCache:
    """SubjectAccessReview answers kept for `AUTHZ_TTL` seconds, as the kubelet's webhook caches them."""

    def __init__(self, review: Callable[[str, tuple[str, ...], str], bool]) -> None:
        self._review = review
        self._seen: dict[tuple[str, tuple[str, ...], str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, user: str, groups: tuple[str, ...], node: str) -> bool:
        key = (user, groups, node)
        with self._lock:
            hit = self._seen.get(key)
        if hit is not None and time.monotonic() - hit[1] < AUTHZ_TTL:
            return hit[0]
        answer = self._review(user, groups, node)
        with self._lock:
            self._seen[key] = (answer, time.monotonic())
        return answer


def subject_access_review(authz: Any) -> Callable[[str, tuple[str, ...], str], bool]:
    """A reviewer asking the API server (`authz`: a kubernetes AuthorizationV1Api)."""

    def review(user: str, groups: tuple[str, ...], node: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": list(groups),
                "resourceAttributes": {"verb": "get", "resource": "nodes", "subresource": "proxy", "name": node},
            },
        }
        result = authz.create_subject_access_review(body)
        return bool(result.status and result.status.allowed)

    return review


def _subject(cert: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return user, tuple(groups)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KubeletServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet api: " + format, *args)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = message.encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        try:
            self._get()
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (the end of a `kubectl logs -f`)

    def _get(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "containerLogs":
            raise RequestError(HTTPStatus.NOT_FOUND, f"{url.path}: not served by this node agent")
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            raise RequestError(HTTPStatus.UNAUTHORIZED, "Unauthorized: a client certificate is required")
        user, groups = _subject(cert)
        _, namespace, pod_name, container = parts
        backend = self.server.backend
        pod = backend.find_pod(namespace, pod_name)
        if pod is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f'pod "{pod_name}" not found in namespace "{namespace}"')
        if not backend.allowed(user, groups, pod.node):
            raise RequestError(
                HTTPStatus.FORBIDDEN,
                f"Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy, name={pod.node})",
            )
        if container not in pod.containers:
            raise RequestError(HTTPStatus.BAD_REQUEST, f'container "{container}" in pod "{pod_name}" is not valid')
        options, previous = parse_options(urllib.parse.parse_qs(url.query, keep_blank_values=True), datetime.now(UTC))
        files = containerlogs.instances(containerlogs.log_dir(backend.state, namespace, pod_name, pod.uid), container)
        if previous:
            if len(files) < 2:
                raise RequestError(
                    HTTPStatus.BAD_REQUEST, f'previous terminated container "{container}" in pod "{pod_name}" not found'
                )
            path, follow = files[-2], False
        else:
            if not files:
                raise RequestError(
                    HTTPStatus.BAD_REQUEST, f'container "{container}" in pod "{pod_name}" is waiting to start'
                )
            path, follow = files[-1], options.follow
        self._stream(path, options, follow, lambda: backend.running(pod.uid, container, int(path.stem)))

    def _stream(self, path: Path, options: containerlogs.Options, follow: bool, running: Callable[[], bool]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        data = path.read_bytes()
        offset = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        budget = options.limit_bytes
        sent = self._chunks(containerlogs.select(containerlogs.read_records(data[:offset]), options))
        budget = None if budget is None else budget - sent
        while follow and (budget is None or budget > 0):
            alive = running()  # read before the file, so the last lines of a finished instance are sent
            time.sleep(FOLLOW_POLL)
            with path.open("rb") as f:
                f.seek(offset)
                more = f.read()
            end = more.rfind(b"\n") + 1
            if end:
                offset += end
                # since and tail applied to what was there; new lines follow in full (the kubelet's way)
                sent = self._chunks(
                    containerlogs.select(
                        containerlogs.read_records(more[:end]),
                        containerlogs.Options(timestamps=options.timestamps, limit_bytes=budget),
                    )
                )
                budget = None if budget is None else budget - sent
            elif not alive:
                break
        self.wfile.write(b"0\r\n\r\n")

    def _chunks(self, pieces: Any) -> int:
        sent = 0
        for piece in pieces:
            if piece:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
        self.wfile.flush()
        return sent


class KubeletServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend, pki: Path) -> None:
        super().__init__(address, _Handler)
        self.backend = backend
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "kubelet.crt"), str(pki / "kubelet.key"))
        ctx.load_verify_locations(str(pki / "ca.crt"))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a request without a certificate gets the kubelet's 401
        # the handshake happens in the handler's thread, so a slow client never blocks accept()
        self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True, name="kubelet-api")
        thread.start()
        return thread
