"""Names and labels of the objects the operator owns for a job (pure, no API calls)."""

from __future__ import annotations

from elasticjob_api.models import ElasticJob

LABEL_JOB = "elasticjob.io/job-name"
LABEL_ROLE = "elasticjob.io/role"
LABEL_INDEX = "elasticjob.io/replica-index"
LABEL_GENERATION = "elasticjob.io/store-generation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "elasticjob-operator"

ROLE_WORKER = "worker"
ROLE_STORE = "store"

STORE_HEALTH_PORT = 8080


def worker_pod_name(job: ElasticJob, index: int) -> str:
    return f"{job.name}-worker-{index}"


def store_pod_name(job: ElasticJob, generation: int) -> str:
    return f"{job.name}-rdzv-g{generation}"


def store_service_name(job: ElasticJob) -> str:
    return f"{job.name}-rdzv"


def service_account_name(job: ElasticJob) -> str:
    return f"{job.name}-elasticjob"


def store_endpoint(job: ElasticJob) -> str:
    return f"{store_service_name(job)}:{job.spec.rendezvous.port}"


def job_labels(job: ElasticJob, role: str | None = None) -> dict[str, str]:
    labels = {LABEL_JOB: job.name, LABEL_MANAGED_BY: MANAGER}
    if role is not None:
        labels[LABEL_ROLE] = role
    return labels


def worker_selector(job: ElasticJob) -> str:
    """The label selector of the job's worker pods, as the scale subresource wants it."""
    return f"{LABEL_JOB}={job.name},{LABEL_ROLE}={ROLE_WORKER}"


def owner_reference(job: ElasticJob) -> dict[str, object]:
    return {
        "apiVersion": job.api_version,
        "kind": job.kind,
        "name": job.name,
        "uid": job.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
