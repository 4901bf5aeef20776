"""The few Kubernetes API calls the operator makes, all idempotent.

Creating an object that exists, or deleting one that is gone, is success: a repeated or resumed
handler converges instead of failing. Objects are created, never updated: what the operator owns
is derived from the job and recreated when lost.

A request the apiserver turns away with 429 (API Priority and Fairness queues full, or "storage
is (re)initializing") is sent again after its `Retry-After`, up to `RETRIES_429` times, as
client-go does; only then does the error fail the handler. Failing at once would make kopf retry
the whole reconcile, which sends every create before the rejected one again (409s) and adds to
the load that caused the 429.

`--kube-api-qps`/`--kube-api-burst` (client-go's token bucket, `RateLimiter`) bound the requests
sent here; 0, the default, sends them unthrottled (kopf's own watches and patches are never
throttled by it).

`map` sends independent requests concurrently (at most `CONCURRENT_REQUESTS` at once across all
reconciles): a job's first reconcile creates 8-9 objects, and one after another they take 8-9
round-trips of a loaded apiserver.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

log = logging.getLogger(__name__)

RETRIES_429 = 10
CONCURRENT_REQUESTS = int(os.environ.get("ELASTICJOB_CONCURRENT_REQUESTS", "16"))
#: seconds to wait when a 429 has no usable Retry-After; the longest wait honoured
RETRY_AFTER_DEFAULT, RETRY_AFTER_MAX = 1.0, 10.0

T = TypeVar("T")
U = TypeVar("U")


def retry_after(exc: ApiException) -> float | None:
    """Seconds to wait before sending a request again, if the apiserver asked for it (429)."""
    if exc.status != 429:
        return None
    header = (exc.headers or {}).get("Retry-After")
    try:
        seconds = float(header) if header is not None else RETRY_AFTER_DEFAULT
    except ValueError:
        seconds = RETRY_AFTER_DEFAULT
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


def send(call: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, sent again after each 429's Retry-After, at most `RETRIES_429` more times."""
    for attempt in range(RETRIES_429 + 1):
        try:
            return call()
        except ApiException as exc:
            wait = retry_after(exc)
            if wait is None or attempt == RETRIES_429:
                raise
            log.info("apiserver said 429, sending again in %.1f s", wait)
            sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


class RateLimiter:
    """client-go's token bucket: `qps` tokens a second, at most `burst` saved; qps 0 never waits."""

    def __init__(self, qps: float = 0.0, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        if qps < 0 or burst < 0 or (qps > 0 and burst < 1):
            raise ValueError(f"--kube-api-qps {qps:g} and --kube-api-burst {burst}: need qps >= 0 and burst >= 1")
        self.qps, self.burst, self._clock = qps, burst, clock
        self._tokens, self._at = float(burst), clock()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take a token; the seconds to wait before sending (0 when one was saved)."""
        if self.qps == 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class Kube:
    """Shared API clients, built once at start-up and kept in kopf's memo."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        configuration = client.Configuration.get_default_copy()
        # one connection per request in flight: kopf's threads, each sending up to a reconcile's creates
        configuration.connection_pool_maxsize = 2 * CONCURRENT_REQUESTS
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.dynamic = DynamicClient(self.api)
        self._senders = ThreadPoolExecutor(CONCURRENT_REQUESTS, thread_name_prefix="kube")
        # the dynamic client's discovery cache is not thread-safe: a lookup that misses (an API
        # that is not installed) resets it while another thread writes to it (KeyError 'resources')
        self._discovery = threading.Lock()
        self._resources: dict[tuple[str, str], Any] = {}
        #: told (verb, HTTP code) of every request sent here (the metrics' apiserver counter)
        self.observe: Callable[[str, int], None] = lambda verb, code: None
        self.limiter = limiter or RateLimiter()

    def _send(self, verb: str, ok: int, call: Callable[[], T]) -> T:
        wait = self.limiter.delay()
        if wait:
            time.sleep(wait)
        try:
            result = send(call)
        except ApiException as exc:
            self.observe(verb, exc.status or 0)
            raise
        self.observe(verb, ok)
        return result

    def map(self, call: Callable[[T], U], items: Iterable[T]) -> list[U]:
        """`call` on every item, concurrently; the results in order, or the first error raised."""
        todo = list(items)
        if len(todo) <= 1:
            return [call(item) for item in todo]
        return list(self._senders.map(call, todo))

    def _resource(self, api_version: str, kind: str) -> Any:
        """The dynamic client's resource for a kind, looked up once, one lookup at a time."""
        with self._discovery:
            key = (api_version, kind)
            if key not in self._resources:
                self._resources[key] = self.dynamic.resources.get(api_version=api_version, kind=kind)
            return self._resources[key]

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create the object; False if it already exists."""
        namespace = manifest["metadata"].get("namespace")
        try:
            resource = self._resource(manifest["apiVersion"], manifest["kind"])
            # serialize=False: the created object is not read, so it is not parsed into wrappers
            self._send("create", 201, lambda: resource.create(body=manifest, namespace=namespace, serialize=False))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def create_optional(self, manifest: dict[str, Any]) -> str | None:
        """Create an object whose API may not be installed (a PodGroup); the reason if it is not."""
        try:
            self.create(manifest)
        except ResourceNotFoundError:
            return f"{manifest['apiVersion']} {manifest['kind']} is not installed in this cluster"
        return None

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None) -> None:
        """Delete a pod; `grace_seconds` None: its own grace period, 0: at once."""
        body = client.V1DeleteOptions(grace_period_seconds=grace_seconds, propagation_policy="Background")
        try:
            self._send(
                "delete",
                200,
                lambda: self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def delete_job(self, namespace: str, name: str, group: str, version: str, plural: str) -> None:
        try:
            api = client.CustomObjectsApi(self.api)
            self._send(
                "delete",
                200,
                lambda: api.delete_namespaced_custom_object(
                    group, version, namespace, plural, name, propagation_policy="Background"
                ),
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def get_optional(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object as a dict, or None if it or its API does not exist."""
        try:
            resource = self._resource(api_version, kind)
            obj = self._send("get", 200, lambda: resource.get(name=name, namespace=namespace))
        except ResourceNotFoundError:
            return None
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj.to_dict())

    def _patch(
        self,
        manifest: dict[str, Any],
        body: Any,
        content_type: str,
        tolerated: tuple[int, ...],
        *,
        status: bool = False,
    ) -> bool:
        """Patch the object as read (or its status subresource); False on a `tolerated` code (it
        changed meanwhile, or is gone): the next reconcile reads again."""
        meta = manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        target = resource.status if status else resource
        try:
            self._send(
                "patch",
                200,
                lambda: target.patch(
                    body=body, name=meta["name"], namespace=meta.get("namespace"), content_type=content_type
                ),
            )
        except ApiException as exc:
            if exc.status in tolerated:
                return False
            raise
        return True

    def patch_status(self, manifest: dict[str, Any], status: dict[str, Any]) -> bool:
        """Merge-patch the status subresource, based on the resourceVersion read."""
        body = {"metadata": {"resourceVersion": manifest["metadata"].get("resourceVersion")}, "status": status}
        return self._patch(manifest, body, "application/merge-patch+json", (404, 409), status=True)

    def merge_patch(self, manifest: dict[str, Any], body: dict[str, Any]) -> bool:
        """Merge-patch the object (not its status); False if it is gone."""
        return self._patch(manifest, body, "application/merge-patch+json", (404,))

    def remove_finalizer(self, manifest: dict[str, Any], finalizer: str) -> bool:
        """Take one finalizer off (a JSON patch that tests it is still where it was read, so a
        finalizer added or removed meanwhile is a 422, False, as is a gone object)."""
        finalizers = list(manifest["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return False
        at = f"/metadata/finalizers/{finalizers.index(finalizer)}"
        body = [{"op": "test", "path": at, "value": finalizer}, {"op": "remove", "path": at}]
        return self._patch(manifest, body, "application/json-patch+json", (404, 409, 422))

    def delete_object(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        try:
            self._send("delete", 200, lambda: resource.delete(name=meta["name"], namespace=meta.get("namespace")))
        except ApiException as exc:
            if exc.status != 404:
                raise
