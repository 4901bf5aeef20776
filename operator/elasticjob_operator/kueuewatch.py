"""Kueue's Workloads and ResourceFlavors as the operator sees them: watched here, not by kopf.

kopf resolves the resources it watches when a CRD event arrives, against the API's discovery,
which can lag behind the CRD's `Established` condition. When Kueue is installed after the
operator, the last CRD event of the group can come before discovery serves `workloads`, and kopf
then never watches them (seen on the local cluster; the same race is reported against kopf and
others). So `KueueWatch` keeps its own caches, one thread per kind: list, then watch from the
list's resourceVersion; while the API is absent (404) it lists again every `ABSENT_RETRY`
seconds, and an expired resourceVersion (410) or a broken stream lists again.

`workloads(namespace, job)` gives the Workloads a job controls (`queueing.essentials`),
`flavors()` every ResourceFlavor's node labels and tolerations. `on_deleting` is told of a
Workload being deleted (the handlers release one whose job is gone).
Limits: cluster-wide, like the operator's other watches (Workloads no ElasticJob controls are
kept too, grouped under no job); no bookmarks (a watch that times out
lists again, one request per `WATCH_SECONDS` per kind).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from elasticjob_operator import queueing

log = logging.getLogger(__name__)

ABSENT_RETRY = 5.0
WATCH_SECONDS = 300
Manifest = dict[str, Any]


class _Kind:
    """One kind's cache: name -> object, filled by a list and kept by a watch."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        plural: str,
        keep: Callable[[Manifest], Manifest],
        group: Callable[[Manifest], Any] = lambda obj: None,
    ) -> None:
        self.api, self.plural, self.keep, self.group = api, plural, keep, group
        #: group (e.g. (namespace, job)) -> (namespace, name) -> the kept object
        self.groups: dict[Any, dict[tuple[str | None, str], Manifest]] = {}
        self.lock = threading.Lock()
        self.on_event: Callable[[Manifest], None] = lambda obj: None

    def _list(self) -> str:
        listed = cast(Manifest, self.api.list_cluster_custom_object(queueing.GROUP, queueing.VERSION, self.plural))
        groups: dict[Any, dict[tuple[str | None, str], Manifest]] = {}
        for obj in listed.get("items") or []:
            meta = obj.get("metadata") or {}
            groups.setdefault(self.group(obj), {})[(meta.get("namespace"), meta["name"])] = self.keep(obj)
        with self.lock:
            self.groups = groups
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                version = self._list()
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.api.list_cluster_custom_object, queueing.GROUP, queueing.VERSION, self.plural,
                    resource_version=version, timeout_seconds=WATCH_SECONDS,
                )  # fmt: skip
                for event in stream:
                    self._apply(event.get("type"), event.get("object") or {})
                    if stop.is_set():
                        return
            except ApiException as exc:
                if exc.status != 404:  # 404: Kueue is not installed (yet)
                    log.info("watching %s.%s: %s; listing again", self.plural, queueing.GROUP, exc.reason)
                stop.wait(ABSENT_RETRY)
            except Exception:  # a broken stream, a lost connection: list again, never die
                log.exception("watching %s.%s failed; listing again", self.plural, queueing.GROUP)
                stop.wait(ABSENT_RETRY)

    def _apply(self, kind: str | None, obj: Manifest) -> None:
        meta = obj.get("metadata") or {}
        if "name" not in meta:
            return
        key, group = (meta.get("namespace"), meta["name"]), self.group(obj)
        with self.lock:
            if kind == "DELETED":
                self.groups.get(group, {}).pop(key, None)
                if not self.groups.get(group, True):
                    del self.groups[group]
            else:
                self.groups.setdefault(group, {})[key] = self.keep(obj)
        if kind != "DELETED":
            self.on_event(obj)

    def values(self, group: Any = None) -> list[Manifest]:
        with self.lock:
            return list(self.groups.get(group, {}).values())


def _flavor(obj: Manifest) -> Manifest:
    spec = obj.get("spec") or {}
    return {
        "metadata": {"name": obj["metadata"]["name"]},
        "spec": {"nodeLabels": dict(spec.get("nodeLabels") or {}), "tolerations": list(spec.get("tolerations") or [])},
    }


class KueueWatch:
    """The Workloads (by controlling job) and ResourceFlavors of the cluster, kept current."""

    def __init__(self, api: client.ApiClient) -> None:
        custom = client.CustomObjectsApi(api)
        self._workloads = _Kind(custom, "workloads", queueing.essentials, self._job_of)
        self._flavors = _Kind(custom, "resourceflavors", _flavor)
        self._stop = threading.Event()
        self.on_deleting: Callable[[Manifest], None] = lambda workload: None
        self._workloads.on_event = self._deleting

    @staticmethod
    def _job_of(obj: Manifest) -> tuple[str | None, str | None]:
        return (obj.get("metadata", {}).get("namespace"), queueing.owner_job(obj))

    def _deleting(self, obj: Manifest) -> None:
        if queueing.deleting(obj) and queueing.owner_job(obj):
            self.on_deleting(obj)

    def start(self) -> KueueWatch:
        for kind in (self._workloads, self._flavors):
            threading.Thread(target=kind.run, args=(self._stop,), name=f"watch-{kind.plural}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def workloads(self, namespace: str | None, job: str | None) -> tuple[Manifest, ...]:
        found = self._workloads.values((namespace, job))
        return tuple(sorted(found, key=lambda w: str(w["metadata"].get("name"))))

    def flavors(self) -> dict[str, Manifest]:
        return {f["metadata"]["name"]: f["spec"] for f in self._flavors.values()}
