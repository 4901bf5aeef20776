"""Keep a gang job's group (builders.build_pod_group) in step with its spec: created, and its
minimum following `minReplicas`.

`update(found, want)` is pure: how to bring the group found to the one built, `None` when they
agree. A Volcano or scheduler-plugins PodGroup is merge-patched (`minMember`, `minResources`).
kube-scheduler's Workload (scheduling.k8s.io/v1alpha1) cannot be: its `podGroups` are immutable,
so it is deleted and created again under the same name. The worker pods name it in
`spec.workloadRef` by name, so the pods already bound stay members of the new one (the gang
plugin counts the group's pods by that reference), and a pod pending meanwhile waits for it, as a
pod naming a missing Workload does.

`sync(kube, job)` carries that out; it is called when pods are created, when the spec changed
(`metadata.generation` is not the status' `observedGeneration`) and while the `GangScheduling`
condition is not True, so a replacement that failed half-way (deleted, but the create refused)
is finished by a later reconcile.
Limits: the group's other fields (labels, owner) are set at creation and not reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from elasticjob_api.models import ElasticJob, Phase
from kubernetes.client.exceptions import ApiException

from elasticjob_operator import builders
from elasticjob_operator.conditions import GANG_SCHEDULING

Manifest = dict[str, Any]


class GroupClient(Protocol):
    """The calls of kube.Kube this module makes."""

    def get_optional(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None: ...
    def create(self, manifest: dict[str, Any]) -> bool: ...
    def create_optional(self, manifest: dict[str, Any]) -> str | None: ...
    def delete_object(self, manifest: dict[str, Any]) -> None: ...
    def merge_patch(self, manifest: dict[str, Any], body: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Update:
    """How to bring a group to the spec: `patch` (a merge patch) or `replace` (delete, create)."""

    patch: dict[str, Any] | None = None
    replace: bool = False


def update(found: Manifest, want: Manifest) -> Update | None:
    """What brings the group `found` to `want` (both kinds as builders.build_pod_group makes them)."""
    if builders.pod_group_minimum(found) == builders.pod_group_minimum(want):
        return None
    if want["kind"] == "Workload":
        return Update(replace=True)
    spec = want["spec"]
    # minResources None removes it (a job whose workers request nothing)
    return Update(patch={"spec": {"minMember": spec["minMember"], "minResources": spec.get("minResources")}})


#: the phases in which a job's pods are being placed or run (not queued, suspended or finished)
ACTIVE_PHASES = frozenset({Phase.CREATED, Phase.WAITING, Phase.RUNNING, Phase.RESTARTING, Phase.SCALING})


def needs_sync(job: ElasticJob, *, creating: bool, phase: str | None) -> bool:
    """Whether this reconcile looks at the group of a job whose plan has `phase` (see the module
    docstring)."""
    if not job.spec.scheduling.gang or phase not in ACTIVE_PHASES:
        return False
    if creating or job.metadata.get("generation") != job.status.observed_generation:
        return True
    return not any(c.type == GANG_SCHEDULING and c.status == "True" for c in job.status.conditions)


@dataclass(frozen=True)
class Outcome:
    """What `sync` did: `done` (created, updated, replaced or ""), or the `problem`; `missing`:
    the group's API is not installed (no gang scheduler)."""

    done: str = ""
    problem: str | None = None
    missing: bool = False


def sync(kube: GroupClient, job: ElasticJob) -> Outcome:
    """Create the group or bring it to the spec."""
    want = builders.build_pod_group(job)
    if want is None:
        return Outcome()
    meta = want["metadata"]
    found = kube.get_optional(want["apiVersion"], want["kind"], meta["name"], meta["namespace"])
    if found is None:  # not there, or its API is not installed (create_optional says which)
        missing = kube.create_optional(want)
        return Outcome(problem=missing, missing=True) if missing else Outcome("created")
    change = update(found, want)
    if change is None:
        return Outcome()
    try:
        if change.patch is not None:
            kube.merge_patch(found, change.patch)
            return Outcome("updated")
        kube.delete_object(found)
        if not kube.create(want):
            return Outcome(problem=f"{want['kind']} {meta['name']} is being replaced (the old one is still there)")
    except ApiException as exc:  # e.g. RBAC without patch/delete: said in the condition, retried later
        return Outcome(problem=f"{want['kind']} {meta['name']} could not follow minReplicas: {exc.status} {exc.reason}")
    return Outcome("replaced")
