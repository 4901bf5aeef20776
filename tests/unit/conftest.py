"""Shared fixtures of the unit tests: example jobs as the operator sees them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

BASE_SPEC: dict[str, Any] = {
    "minReplicas": 1,
    "maxReplicas": 3,
    "replicas": 2,
    "nprocPerNode": 2,
    "template": {
        "metadata": {"labels": {"team": "vision"}},
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "elasticjob-training:dev",
                    "command": ["python", "train.py"],
                    "args": ["--steps", "10"],
                    "env": [{"name": "PET_NNODES", "value": "user-set, overridden"}, {"name": "A", "value": "1"}],
                    "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}},
                },
                {"name": "sidecar", "image": "busybox", "command": ["sleep", "infinity"]},
            ],
            "nodeSelector": {"pool": "train"},
        },
    },
}


def make_job(spec_overrides: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = copy.deepcopy(BASE_SPEC)
    spec.update(spec_overrides or {})
    body: dict[str, Any] = {
        "apiVersion": "elasticjob.io/v1alpha1",
        "kind": "ElasticJob",
        "metadata": {"name": "mnist", "namespace": "team-a", "uid": "1234-uid", "generation": 1},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


@pytest.fixture
def job_body() -> dict[str, Any]:
    return make_job()
