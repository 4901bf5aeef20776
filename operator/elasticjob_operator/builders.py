"""Pure builders: an ElasticJob in, the Kubernetes objects it should own out (plain dicts).

Nothing here calls the API; `tests/unit/test_builders.py` compares the output with golden YAML
files. Limits: the trainer container is found by name (`trainer`, else Kubeflow's `pytorch`);
other containers of the template are copied as they are (sidecars).
"""

from __future__ import annotations

import copy
import math
import os
import re
from decimal import Decimal
from typing import Any

from elasticjob_api.models import GROUP, KIND, Container, ElasticJob, PinningMode

from elasticjob_operator import naming

LAUNCHER = "elasticjob-launch"
TORCHRUN = "torchrun"
TORCHRUN_MODULE = "torch.distributed.run"
GPU_RESOURCE = "nvidia.com/gpu"
STORE_RUN_AS_USER = 65532

Manifest = dict[str, Any]


class BuildError(ValueError):
    """The job cannot be turned into pods; the message says what to fix."""


def resolve_nproc(job: ElasticJob) -> int:
    """`nprocPerNode`, with `auto` meaning the trainer's GPU count, else 1."""
    nproc = job.spec.nproc_per_node
    if isinstance(nproc, int):
        return nproc
    resources = job.spec.template.trainer().resources or {}
    for section in ("limits", "requests"):
        gpus = (resources.get(section) or {}).get(GPU_RESOURCE)
        if gpus is not None and int(gpus) > 0:
            return int(gpus)
    return 1


#: interpreters the launcher may stand in for (its own `python`); a path names another one: exec'd as is
PYTHON_NAMES = re.compile(r"python(3(\.\d+)?)?")
#: python options that change nothing under the launcher (it runs workers unbuffered anyway)
IGNORED_PYTHON_FLAGS = frozenset({"-u", "-B"})


def _python_target(tokens: list[str]) -> tuple[list[str], int] | None:
    """For `python [-u] SCRIPT ...` or `python -m MODULE ...`: the launcher's target flags and
    the index of the first token after the target; None for any other form."""
    if not tokens or not PYTHON_NAMES.fullmatch(tokens[0]):
        return None
    i = 1
    while i < len(tokens) and tokens[i] in IGNORED_PYTHON_FLAGS:
        i += 1
    if i + 1 < len(tokens) and tokens[i] == "-m":
        return ["-m", tokens[i + 1]], i + 2
    if i < len(tokens) and not tokens[i].startswith("-"):
        return [tokens[i]], i + 1
    return None


def _replace_head(
    command: list[str], args: list[str] | None, count: int, head: list[str]
) -> tuple[list[str], list[str] | None]:
    """The first `count` tokens of command + args replaced by `head`, the rest left where it was."""
    if count <= len(command):
        return [*head, *command[count:]], args
    return head, list(args or [])[count - len(command) :]


def launcher_command(container: Container) -> tuple[list[str], list[str] | None]:
    """The trainer's (command, args), run under exactly one `elasticjob-launch` per pod.

    * `elasticjob-launch ...` is left as it is;
    * `torchrun ...` and `python -m torch.distributed.run ...` become `elasticjob-launch ...` with the
      same flags (the launcher takes every torchrun flag);
    * `python train.py ...` and `python -m pkg ...` become the launcher's script (its workers then
      fork from a process that has imported torch, see the launcher's --worker-start);
    * any other command (a shell wrapper, an entrypoint script) runs with `--no-python
      --command-starts-agent auto`: as each worker, or, when it starts torchrun itself, once, with
      `torchrun` resolving to the launcher (the launcher's hosted.py).
    """
    command = list(container.command or [])
    if not command and not container.args:
        raise BuildError(
            f"the 'trainer' container needs a command (e.g. [python, train.py]): the operator runs it under {LAUNCHER}"
        )
    tokens = command + list(container.args or [])
    program = os.path.basename(tokens[0])
    if program == LAUNCHER:
        return command, container.args
    if program == TORCHRUN:
        return _replace_head(command, container.args, 1, [LAUNCHER])
    found = _python_target(tokens)
    if found is None:
        return [LAUNCHER, "--no-python", "--command-starts-agent", "auto", *command], container.args
    target, end = found
    if target == ["-m", TORCHRUN_MODULE]:
        return _replace_head(command, container.args, end, [LAUNCHER])
    return _replace_head(command, container.args, end, [LAUNCHER, *target])


def rdzv_conf(job: ElasticJob) -> str:
    r = job.spec.rendezvous
    return (
        f"join_timeout={r.join_timeout_seconds},last_call_timeout={r.last_call_timeout_seconds},"
        f"close_timeout={r.close_timeout_seconds},heartbeat_timeout={r.heartbeat_timeout_seconds}"
    )


def launcher_env(job: ElasticJob) -> list[dict[str, Any]]:
    """The environment that configures `elasticjob-launch` in a worker pod (torchrun's PET_* names)."""

    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    spec = job.spec
    stall = spec.stall_timeout_seconds
    return [
        *([{"name": "ELASTICJOB_STALL_TIMEOUT", "value": str(stall)}] if stall else []),
        {"name": "PET_NNODES", "value": f"{spec.min_replicas}:{spec.max_replicas}"},
        {"name": "PET_NPROC_PER_NODE", "value": str(resolve_nproc(job))},
        {"name": "PET_RDZV_BACKEND", "value": spec.rendezvous.backend.value},
        {"name": "PET_RDZV_ENDPOINT", "value": naming.store_endpoint(job)},
        {"name": "PET_RDZV_ID", "value": job.uid},
        {"name": "PET_RDZV_CONF", "value": rdzv_conf(job)},
        {"name": "PET_MAX_RESTARTS", "value": str(spec.max_restarts)},
        {"name": "PET_NUMA_BINDING", "value": spec.pinning.value},
        # stderr to the pod log and to a file, so a failure report can quote the error
        {"name": "PET_TEE", "value": "2"},
        # the address other agents reach this one at: pod hostnames do not resolve across pods
        {"name": "PET_LOCAL_ADDR", "valueFrom": field("status.podIP")},
        {"name": "ELASTICJOB_NAME", "value": job.name},
        {"name": "ELASTICJOB_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "ELASTICJOB_POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "ELASTICJOB_NODE_NAME", "valueFrom": field("spec.nodeName")},
    ]


def _guaranteed(resources: dict[str, Any]) -> dict[str, Any]:
    """Requests = limits with an integer CPU count, so the static CPU manager grants whole cores."""
    limits = dict(resources.get("limits") or {})
    requests = dict(resources.get("requests") or {})
    merged = {**requests, **limits}
    if "cpu" not in merged or "memory" not in merged:
        raise BuildError("guaranteedQoS needs cpu and memory in the trainer's resources (requests or limits)")
    merged["cpu"] = str(math.ceil(_cpu_quantity(str(merged["cpu"]))))
    return {"requests": dict(merged), "limits": dict(merged)}


def _cpu_quantity(text: str) -> float:
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    return float(text)


def _scheduling(job: ElasticJob, pod_spec: dict[str, Any]) -> None:
    sched = job.spec.scheduling
    if sched.scheduler_name:
        pod_spec["schedulerName"] = sched.scheduler_name
    if sched.priority_class_name:
        pod_spec["priorityClassName"] = sched.priority_class_name


def _metadata(job: ElasticJob, name: str, labels: dict[str, str], annotations: dict[str, str]) -> Manifest:
    meta: Manifest = {"name": name, "namespace": job.namespace, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    meta["ownerReferences"] = [naming.owner_reference(job)]
    return meta


def build_worker_pod(job: ElasticJob, index: int) -> Manifest:
    """Worker pod `<job>-worker-<index>`: the template, with the trainer run under the launcher."""
    template = job.spec.template.model_dump(by_alias=True, exclude_none=True)
    template_meta = template.get("metadata") or {}
    labels = {
        **(template_meta.get("labels") or {}),
        **naming.job_labels(job, naming.ROLE_WORKER),
        naming.LABEL_INDEX: str(index),
    }
    annotations = dict(template_meta.get("annotations") or {})
    pod_spec: dict[str, Any] = copy.deepcopy(template["spec"])
    ours = {e["name"] for e in launcher_env(job)}
    trainer = job.spec.template.trainer().name
    for container in pod_spec["containers"]:
        if container["name"] != trainer:
            continue
        command, args = launcher_command(job.spec.template.trainer())
        container["command"] = command
        if args is not None:
            container["args"] = list(args)
        user_env = [e for e in container.get("env", []) if e.get("name") not in ours]
        # ours first, so the template's values may refer to them: $(ELASTICJOB_POD_NAME)
        container["env"] = launcher_env(job) + user_env
        if job.spec.guaranteed_qos and job.spec.pinning != PinningMode.NONE:
            container["resources"] = _guaranteed(container.get("resources") or {})
    pod_spec["restartPolicy"] = "Never"
    pod_spec["serviceAccountName"] = naming.service_account_name(job)
    pod_spec["automountServiceAccountToken"] = True
    _scheduling(job, pod_spec)
    if job.spec.scheduling.gang:
        group = pod_group_name(job)
        if uses_workload_api(job):
            pod_spec["workloadRef"] = {"name": group, "podGroup": WORKLOAD_POD_GROUP}
        else:
            annotations["scheduling.k8s.io/group-name"] = group
            labels["scheduling.x-k8s.io/pod-group"] = group
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(job, naming.worker_pod_name(job, index), labels, annotations),
        "spec": pod_spec,
    }


def _restricted_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": STORE_RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_store_pod(job: ElasticJob, generation: int) -> Manifest:
    """The c10d store pod of one store generation, run by the launcher in store mode.

    It uses the trainer's image and placement (nodeSelector, tolerations, node affinity), so it
    lands where that image is available; it needs no GPU.
    """
    template = job.spec.template.model_dump(by_alias=True, exclude_none=True)
    trainer = next(c for c in template["spec"]["containers"] if c["name"] == job.spec.template.trainer().name)
    port = job.spec.rendezvous.port
    health = naming.STORE_HEALTH_PORT
    probe = {"httpGet": {"path": "/healthz", "port": health}, "periodSeconds": 2, "timeoutSeconds": 2}
    container: dict[str, Any] = {
        "name": "store",
        "command": [
            LAUNCHER,
            "store",
            "--port",
            str(port),
            "--health-port",
            str(health),
            "--generation",
            str(generation),
        ],
        "env": [{"name": "ELASTICJOB_STORE_GENERATION", "value": str(generation)}],
        "ports": [
            {"name": "c10d", "containerPort": port, "protocol": "TCP"},
            {"name": "health", "containerPort": health, "protocol": "TCP"},
        ],
        "readinessProbe": probe,
        # liveness (10 s of silence) only once the store has answered: on a busy node, importing torch
        # in the store's interpreter can take longer than that, and a store killed before it ever
        # served would be recreated (a new generation) for nothing (seen on kind)
        "startupProbe": {**probe, "failureThreshold": 90},
        "livenessProbe": {**probe, "failureThreshold": 5},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": _restricted_security_context(),
    }
    for key in ("image", "imagePullPolicy"):
        if key in trainer:
            container[key] = trainer[key]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    for key in ("nodeSelector", "tolerations", "imagePullSecrets"):
        if key in template["spec"]:
            pod_spec[key] = copy.deepcopy(template["spec"][key])
    # node affinity only: pod (anti-)affinity terms are written for the workers, and on the
    # store they would keep workers off its node (e.g. "one worker per node" spreading)
    node_affinity = (template["spec"].get("affinity") or {}).get("nodeAffinity")
    if node_affinity:
        pod_spec["affinity"] = {"nodeAffinity": copy.deepcopy(node_affinity)}
    _scheduling(job, pod_spec)
    labels = {**naming.job_labels(job, naming.ROLE_STORE), naming.LABEL_GENERATION: str(generation)}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(job, naming.store_pod_name(job, generation), labels, {}),
        "spec": pod_spec,
    }


def build_store_service(job: ElasticJob) -> Manifest:
    """Service `<job>-rdzv`: the stable name agents rendezvous through, whatever the store generation."""
    port = job.spec.rendezvous.port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(job, naming.store_service_name(job), naming.job_labels(job, naming.ROLE_STORE), {}),
        "spec": {
            "selector": naming.job_labels(job, naming.ROLE_STORE),
            "ports": [{"name": "c10d", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def build_store_network_policy(job: ElasticJob) -> Manifest:
    """NetworkPolicy `<job>-rdzv`: only this job's worker pods may open the store's c10d port.

    torch's TCPStore has no authentication, so without it any pod in the cluster can read and
    write the job's rendezvous. The policy selects every store generation's pod (the job's store
    labels, not the generation label) and admits TCP to the rendezvous port from pods with this
    job's worker labels. A podSelector without a namespaceSelector matches in the policy's own
    namespace only, so a job of the same name in another namespace does not match.

    The store's health port gets no rule: only the kubelet's probes use it, and traffic from the
    pod's own node is always allowed (Kubernetes' NetworkPolicy semantics). Limits: ingress only
    (the store's egress is not restricted); a pod in the same namespace that someone labels as one
    of this job's workers is admitted; it takes effect only where the network plugin enforces
    NetworkPolicy (docs/security.md).
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(job, naming.store_service_name(job), naming.job_labels(job, naming.ROLE_STORE), {}),
        "spec": {
            "podSelector": {"matchLabels": naming.job_labels(job, naming.ROLE_STORE)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": naming.job_labels(job, naming.ROLE_WORKER)}}],
                    "ports": [{"protocol": "TCP", "port": job.spec.rendezvous.port}],
                }
            ],
        },
    }


def build_rbac(job: ElasticJob) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding: the job's pods may get/patch only this job's status."""
    name = naming.service_account_name(job)
    labels = naming.job_labels(job)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(job, name, labels, {}),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(job, name, labels, {}),
            "rules": [
                {
                    "apiGroups": ["elasticjob.io"],
                    "resources": ["elasticjobs/status"],
                    "resourceNames": [job.name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(job, name, labels, {}),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.namespace}],
        },
    ]


def pod_group_name(job: ElasticJob) -> str:
    return f"{job.name}-workers"


#: the one pod group of a job's Workload (Kubernetes' gang scheduling): its worker pods
WORKLOAD_POD_GROUP = "workers"


def uses_workload_api(job: ElasticJob) -> bool:
    """Gang scheduling by kube-scheduler itself (Workload API, Kubernetes >= 1.35 with the
    GenericWorkload and GangScheduling gates): no schedulerName, or `default-scheduler`."""
    return job.spec.scheduling.scheduler_name in (None, "default-scheduler")


def build_pod_group(job: ElasticJob) -> Manifest | None:
    """The gang's group: a Workload (scheduling.k8s.io/v1alpha1) for kube-scheduler, a PodGroup for
    Volcano (schedulerName `volcano`), else a scheduler-plugins PodGroup. minCount = minReplicas."""
    sched = job.spec.scheduling
    if not sched.gang:
        return None
    metadata = _metadata(job, pod_group_name(job), naming.job_labels(job), {})
    if uses_workload_api(job):
        return {
            "apiVersion": "scheduling.k8s.io/v1alpha1",
            "kind": "Workload",
            "metadata": metadata,
            "spec": {
                "controllerRef": {"apiGroup": GROUP, "kind": KIND, "name": job.name},
                "podGroups": [{"name": WORKLOAD_POD_GROUP, "policy": {"gang": {"minCount": job.spec.min_replicas}}}],
            },
        }
    api_version = (
        "scheduling.volcano.sh/v1beta1" if sched.scheduler_name == "volcano" else "scheduling.x-k8s.io/v1alpha1"
    )
    spec: Manifest = {"minMember": job.spec.min_replicas}
    minimum = gang_min_resources(job)
    if minimum:
        spec["minResources"] = minimum
    return {"apiVersion": api_version, "kind": "PodGroup", "metadata": metadata, "spec": spec}


#: a Kubernetes quantity's suffixes (resource.Quantity: binary, decimal SI)
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** (3 * i - 9) for i, s in enumerate(("n", "u", "m", "", "k", "M", "G", "T", "P", "E"))},
}
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)")


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity ("1500m", "1Gi", "2", 2) as a number."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise BuildError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]


def pod_requests(pod: Manifest) -> dict[str, Decimal]:
    """What the scheduler reserves for a pod: per resource, the containers' requests summed (a
    request left out defaults to its limit, as the API server does), or the largest init
    container's if that is more. Limits: pod overhead and sidecar init containers are not added."""

    def requests(container: Manifest) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: parse_quantity(value) for name, value in merged.items()}

    total: dict[str, Decimal] = {}
    for container in pod["spec"].get("containers") or []:
        for name, value in requests(container).items():
            total[name] = total.get(name, Decimal(0)) + value
    for container in pod["spec"].get("initContainers") or []:
        for name, value in requests(container).items():
            total[name] = max(total.get(name, Decimal(0)), value)
    return total


def format_quantity(value: Decimal, binary: bool = False) -> str:
    """A quantity as Kubernetes writes it: whole units (with the largest binary suffix that
    divides them, for bytes), else millis (rounded up)."""
    if value != value.to_integral_value():
        return f"{math.ceil(value * 1000)}m"
    whole = int(value)
    if binary:
        for suffix, size in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if whole and whole % size == 0:
                return f"{whole // size}{suffix}"
    return str(whole)


def _in_bytes(resource: str) -> bool:
    return resource in ("memory", "ephemeral-storage") or resource.startswith("hugepages-")


def gang_min_resources(job: ElasticJob) -> dict[str, str]:
    """A PodGroup's `minResources`: what `minReplicas` worker pods request together (Volcano and
    scheduler-plugins admit the gang only when the cluster has that much free)."""
    per_pod = pod_requests(build_worker_pod(job, 0))
    return {
        name: format_quantity(value * job.spec.min_replicas, _in_bytes(name)) for name, value in sorted(per_pod.items())
    }


def pod_group_minimum(group: Manifest) -> tuple[Any, Any]:
    """What of a gang group follows `minReplicas`: (minCount or minMember, minResources)."""
    spec = group.get("spec") or {}
    if group.get("kind") == "Workload":
        counts = [(g.get("policy") or {}).get("gang", {}).get("minCount") for g in spec.get("podGroups") or []]
        return counts, None
    return spec.get("minMember"), spec.get("minResources")


def build_owned_objects(job: ElasticJob, *, store_network_policy: bool = False) -> list[Manifest]:
    """Everything a job owns besides its pods: RBAC, the store Service, the store's NetworkPolicy
    when `store_network_policy` (the operator's `--store-network-policy`, on by default there), the
    optional PodGroup."""
    objects = [*build_rbac(job), build_store_service(job)]
    if store_network_policy:
        objects.append(build_store_network_policy(job))
    group = build_pod_group(job)
    if group is not None:
        objects.append(group)
    return objects
