"""The few Kubernetes API calls the operator makes, all idempotent.

Creating an object that exists, or deleting one that is gone, is success: a repeated or resumed
handler converges instead of failing. Objects are created, never updated: what the operator owns
is derived from the job and recreated when lost.
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from elasticjob_operator.planner import Deletion

log = logging.getLogger(__name__)


class Kube:
    """Shared API clients, built once at start-up and kept in kopf's memo."""

    def __init__(self) -> None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.dynamic = DynamicClient(self.api)

    def create(self, manifest: dict[str, Any]) -> bool:
        """Create the object; False if it already exists."""
        namespace = manifest["metadata"].get("namespace")
        try:
            resource = self.dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
            resource.create(body=manifest, namespace=namespace)
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

    def delete_pod(self, namespace: str, deletion: Deletion) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=deletion.grace_seconds, propagation_policy="Background")
        try:
            self.core.delete_namespaced_pod(deletion.name, namespace, body=body)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def delete_job(self, namespace: str, name: str, group: str, version: str, plural: str) -> None:
        try:
            client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
                group, version, namespace, plural, name, propagation_policy="Background"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
