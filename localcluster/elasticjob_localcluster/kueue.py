"""Kueue on the local control plane, with its webhooks: `install` and `uninstall`.

`ensure()` builds (once, cached by version) the Kueue manager and fetches its manifests
(hack/kueue/ensure.sh). `install(kubeconfig, kueue_dir)` puts into a running cluster what
Kueue's `config/default` kustomization would, renamed as it does (`kueue-` prefix, namespace
kueue-system): the CRDs (server-side apply), the manager's ServiceAccount and RBAC (plus reading
ElasticJobs, whose ownership Kueue walks), a Configuration in a ConfigMap, a Secret with a serving
certificate for `kueue-webhook-service.kueue-system.svc` from a CA of its own, the Deployment
(1 replica) and the webhook Service, then the Mutating/ValidatingWebhookConfigurations with that
CA's bundle. It returns once a server-side dry run of a queued Job comes back suspended, which only
Kueue's mutating webhook does: the API server reached it (it routes a Service to its endpoints,
cluster.py's `--enable-aggregator-routing`). A second call changes nothing that is in place (the
certificate in the Secret is reused). `uninstall` removes it all but the CRDs.

The Configuration: frameworks `batch/job` only (no `pod` integration: pods are left alone),
ElasticJob as an external framework, no internal cert management (so Kueue reads the mounted
certificate, also at its hardcoded /etc/kueue/metrics/certs), no leader election (one replica,
Recreate), metrics off, VisibilityOnDemand off (its API server wants certificates and a delegated
authentication setup of its own), waitForPodsReady off.

Where it runs: by default the Deployment's command is the absolute path of the cached binary, so it
runs only where pods are host processes (the local cluster; its image field names the matching
release for the record). With `image=` (kind: `image_name(kueue_dir)`, the FROM scratch image of
hack/kueue/image.sh, loaded into the nodes by hack/kind/e2e.sh) the pod runs that image's `/kueue`
(`imagePullPolicy: IfNotPresent`) under Kubernetes' restricted profile, as Kueue's own manifest
does: uid/gid 65532, runAsNonRoot, no privilege escalation, every capability dropped, seccomp
RuntimeDefault, a read-only root filesystem (the manager writes no file: its Configuration and
certificates are mounted read-only; runc makes their mount points), enforced by the namespace's
`pod-security.kubernetes.io/enforce: restricted` label. On kind the API server reaches the webhook
Service through kube-proxy.

Limits: CRDs are applied without Kueue's conversion webhook patches, so use their v1beta2 version
only; the serving certificate lasts 10 days; on the local cluster the volumes' mount points
(/etc/kueue/..., /tmp/k8s-webhook-server/...) are created on the host as empty directories, as
every local-cluster mount point is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from elasticjob_localcluster.cluster import REPO, k8s_bin_dir, run_ensure
from elasticjob_localcluster.pki import make_ca, make_serving_cert

NAMESPACE = "kueue-system"
PREFIX = "kueue-"
SERVICE_ACCOUNT = "kueue-controller-manager"
DEPLOYMENT = "kueue-controller-manager"
CONFIG_MAP = "kueue-manager-config"
SECRET = "kueue-webhook-server-cert"  # noqa: S105 (a Secret's name)
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_PORT = 9443
HEALTH_PORT = 8081
#: the Configuration's default webhook.certDir (Kueue's own Deployment mounts its Secret there)
WEBHOOK_CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"  # noqa: S108 (a mount point in the pod)
#: read at startup by cmd/kueue/main.go whenever internal cert management is off (hardcoded there)
METRICS_CERT_DIR = "/etc/kueue/metrics/certs"
CONFIG_DIR = "/etc/kueue/config"
FRAMEWORKS = ("batch/job",)
EXTERNAL_FRAMEWORKS = ("ElasticJob.v1alpha1.elasticjob.io",)
FIELD_MANAGER = "elasticjob-localcluster"
#: the repository of hack/kueue/image.sh's image (tag: the Kueue version)
IMAGE_REPO = "elasticjob.local/kueue"
#: the image's user and group (its USER), as Kubernetes' restricted profile wants: numeric, not root
IMAGE_UID = 65532
#: on every object install makes (not the CRDs), so uninstall finds the cluster-scoped ones
MANAGED = {"app.kubernetes.io/name": "kueue", "app.kubernetes.io/managed-by": FIELD_MANAGER}
SELECTOR = {"app.kubernetes.io/name": "kueue", "control-plane": "controller-manager"}
#: the webhooks that Kueue's kustomization keeps off kube-system and its own namespace (so its own
#: pod can be created while it is down)
_NOT_SYSTEM = ("mpod.kb.io", "vpod.kb.io", "mdeployment.kb.io", "vdeployment.kb.io", "mstatefulset.kb.io",
               "vstatefulset.kb.io")  # fmt: skip

Progress = Callable[[str], None]


def ensure() -> Path:
    """The Kueue directory of hack/kueue/ensure.sh (the `kueue` binary, crd/, rbac/, webhook/)."""
    return run_ensure(REPO / "hack/kueue/ensure.sh")


def version(kueue_dir: Path) -> str:
    """The Kueue version of an ensure.sh directory (`kueue-<version>-<hash>`)."""
    return kueue_dir.name.split("-")[1]


def image_name(kueue_dir: Path) -> str:
    """The name hack/kueue/image.sh gives the image of `kueue_dir`'s binary."""
    return f"{IMAGE_REPO}:{version(kueue_dir)}"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _prefixed(doc: dict[str, Any]) -> dict[str, Any]:
    """What kustomize's `namespace: kueue-system` and `namePrefix: kueue-` make of an RBAC object."""
    doc = json.loads(json.dumps(doc))
    meta = doc["metadata"]
    meta["name"] = PREFIX + meta["name"]
    meta["labels"] = {**meta.get("labels", {}), **MANAGED}
    if "namespace" in meta:
        meta["namespace"] = NAMESPACE
    if "roleRef" in doc:
        doc["roleRef"]["name"] = PREFIX + doc["roleRef"]["name"]
    for subject in doc.get("subjects", []):
        subject["name"] = PREFIX + subject["name"]
        subject["namespace"] = NAMESPACE
    return doc


def _elasticjob_reader() -> list[dict[str, Any]]:
    """Kueue Gets (through its metadata cache: list and watch too) a child's controller owner when
    the owner's kind is an external framework."""
    name = PREFIX + "elasticjob-owner-reader"
    rule = {"apiGroups": ["elasticjob.io"], "resources": ["elasticjobs"], "verbs": ["get", "list", "watch"]}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": MANAGED}, "rules": [rule]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "labels": MANAGED},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]},
    ]  # fmt: skip


def configuration(frameworks: Iterable[str], external_frameworks: Iterable[str]) -> dict[str, Any]:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for one replica with mounted certificates."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f":{HEALTH_PORT}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": WEBHOOK_PORT, "certDir": WEBHOOK_CERT_DIR},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "featureGates": {"VisibilityOnDemand": False},
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": list(frameworks), "externalFrameworks": list(external_frameworks)},
    }


def manifests(
    kueue_dir: Path,
    certs: dict[str, bytes],
    frameworks: Iterable[str] = FRAMEWORKS,
    external_frameworks: Iterable[str] = EXTERNAL_FRAMEWORKS,
    node_selector: Mapping[str, str] | None = None,
    *,
    image: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The objects of an install but the CRDs: (what the manager needs, its webhook configurations).

    `certs` has `ca.crt`, `tls.crt` and `tls.key` (PEM); `node_selector` places the manager's pod;
    `image` is a Kueue image to run (its `/kueue`, restricted) instead of the host's binary.
    """
    config_text = yaml.safe_dump(configuration(frameworks, external_frameworks), sort_keys=False)
    secret_data = {k: base64.b64encode(v).decode() for k, v in sorted(certs.items())}
    # a new certificate or configuration restarts the manager (it reads both at startup)
    inputs = hashlib.sha256(json.dumps([config_text, secret_data]).encode()).hexdigest()[:16]
    ver = version(kueue_dir)
    ns_meta = {"namespace": NAMESPACE, "labels": MANAGED}
    rbac = [_prefixed(d) for f in sorted((kueue_dir / "rbac").glob("*.yaml")) for d in _docs(f)]
    mount = [
        {"name": "certs", "mountPath": WEBHOOK_CERT_DIR, "readOnly": True},
        {"name": "certs", "mountPath": METRICS_CERT_DIR, "readOnly": True},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    ]
    container: dict[str, Any] = {
        "name": "manager",
        "image": f"registry.k8s.io/kueue/kueue:{ver}",
        "command": [str(kueue_dir / "kueue"), f"--config={CONFIG_DIR}/controller_manager_config.yaml",
                    "--zap-log-level=2"],
        "ports": [{"name": "webhook-server", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
                  {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        "volumeMounts": mount,
    }  # fmt: skip
    pod_security: dict[str, Any] = {}
    ns_labels = MANAGED
    if image is not None:
        container["image"], container["imagePullPolicy"] = image, "IfNotPresent"
        container["command"] = ["/kueue", *container["command"][1:]]
        container["securityContext"] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}  # fmt: skip
        pod_security = {"securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                                            "seccompProfile": {"type": "RuntimeDefault"}}}  # fmt: skip
        # the API server's PodSecurity admission refuses the pod if it does not fit the profile
        ns_labels = {**MANAGED, "pod-security.kubernetes.io/enforce": "restricted"}
    manager = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": ns_labels}},
        *rbac,
        *_elasticjob_reader(),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, **ns_meta},
         "data": {"controller_manager_config.yaml": config_text}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, **ns_meta}, "type": "kubernetes.io/tls",
         "data": secret_data},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEBHOOK_SERVICE, **ns_meta},
         "spec": {"selector": SELECTOR, "ports": [{"port": 443, "protocol": "TCP", "targetPort": WEBHOOK_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOYMENT, **ns_meta},
         "spec": {
             "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": SELECTOR},
             "template": {
                 "metadata": {"labels": {**SELECTOR, **MANAGED},
                              "annotations": {"elasticjob.io/kueue-inputs": inputs}},
                 "spec": {
                     "serviceAccountName": SERVICE_ACCOUNT, "terminationGracePeriodSeconds": 10,
                     "nodeSelector": dict(node_selector or {}), **pod_security,
                     "containers": [container],
                     "volumes": [{"name": "certs", "secret": {"secretName": SECRET}},
                                 {"name": "config", "configMap": {"name": CONFIG_MAP}}],
                 },
             },
         }},
    ]  # fmt: skip
    ca_bundle = base64.b64encode(certs["ca.crt"]).decode()
    webhooks = []
    for doc in _docs(kueue_dir / "webhook" / "manifests.yaml"):
        doc["metadata"] = {"name": PREFIX + doc["metadata"]["name"], "labels": MANAGED}
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {
                "caBundle": ca_bundle,
                "service": {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "path": path, "port": 443},
            }
            if hook["name"] in _NOT_SYSTEM:
                hook["namespaceSelector"] = {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", NAMESPACE]}
                ]}  # fmt: skip
        webhooks.append(doc)
    return manager, webhooks


class _Kubectl:
    def __init__(self, kubectl: Path, kubeconfig: Path) -> None:
        self.argv = [str(kubectl), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.argv, *args], input=stdin, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def apply(self, objects: list[dict[str, Any]]) -> None:
        text = yaml.safe_dump_all(objects, sort_keys=False)
        self("apply", "--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=text)


def _certs(kube: _Kubectl) -> dict[str, bytes]:
    """The Secret's certificate if one is installed (a second install keeps it), else a new one."""
    found = kube("get", "secret", SECRET, "-n", NAMESPACE, "-o", "json", check=False)
    if found.returncode == 0:
        data = json.loads(found.stdout).get("data") or {}
        if {"ca.crt", "tls.crt", "tls.key"} <= set(data):
            return {k: base64.b64decode(data[k]) for k in ("ca.crt", "tls.crt", "tls.key")}
    with tempfile.TemporaryDirectory(prefix="kueue-pki-") as tmp:
        pki = Path(tmp)
        make_ca(pki, "kueue-webhook-ca")
        service = f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc"
        make_serving_cert(pki, "webhook", [service, f"{service}.cluster.local"])
        return {
            "ca.crt": (pki / "ca.crt").read_bytes(),
            "tls.crt": (pki / "webhook.crt").read_bytes(),
            "tls.key": (pki / "webhook.key").read_bytes(),
        }


#: a queued Job that Kueue's mutating webhook suspends: the proof, by server-side dry run, that the
#: API server calls it (the `default` namespace is one Kueue manages; nothing is stored)
_PROBE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "kueue-webhook-probe", "namespace": "default",
                 "labels": {"kueue.x-k8s.io/queue-name": "kueue-webhook-probe"}},
    "spec": {"template": {"spec": {"restartPolicy": "Never",
                                   "containers": [{"name": "probe", "image": "none", "command": ["true"]}]}}},
}  # fmt: skip


def _manager_story(kube: _Kubectl) -> str:
    """The manager's pods (phase, node, why a container waits), the namespace's last warnings and the
    manager's last log lines, for errors."""
    found = kube("get", "pods", "-n", NAMESPACE, "-o", "json", check=False)
    pods = json.loads(found.stdout)["items"] if found.returncode == 0 else []
    lines = []
    for pod in pods:
        waiting = [
            f"{c['name']}: {state['reason']}: {state.get('message', '')}".strip()
            for c in pod.get("status", {}).get("containerStatuses") or []
            for state in [c.get("state", {}).get("waiting") or c.get("lastState", {}).get("terminated") or {}]
            if state.get("reason")
        ]
        lines.append(f"pod {pod['metadata']['name']} {pod.get('status', {}).get('phase')} on "
                     f"{pod['spec'].get('nodeName', '-')} {'; '.join(waiting)}")  # fmt: skip
    # a pod refused (say, by PodSecurity admission) is only in the ReplicaSet's events
    events = kube("get", "events", "-n", NAMESPACE, "--field-selector=type=Warning", "--sort-by=.lastTimestamp",
                  check=False)  # fmt: skip
    logs = kube("logs", "-n", NAMESPACE, f"deployment/{DEPLOYMENT}", "--tail=20", check=False)
    return "\n".join([*lines, *events.stdout.strip().splitlines()[-5:], "--- kueue's log",
                      (logs.stdout or logs.stderr).strip()])  # fmt: skip


def _wait_webhooks(kube: _Kubectl, deadline: float) -> None:
    last = ""
    while time.monotonic() < deadline:
        result = kube("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(_PROBE), check=False)
        if result.returncode == 0:
            if json.loads(result.stdout)["spec"].get("suspend") is True:
                return
            last = "the dry-run Job came back unsuspended"
        else:
            last = result.stderr.strip()
        time.sleep(0.5)
    raise RuntimeError(f"Kueue's webhooks did not answer: {last}\n{_manager_story(kube)}")


def install(
    kubeconfig: Path,
    kueue_dir: Path,
    *,
    kubectl: Path | None = None,
    frameworks: Iterable[str] = FRAMEWORKS,
    external_frameworks: Iterable[str] = EXTERNAL_FRAMEWORKS,
    node_selector: Mapping[str, str] | None = None,
    image: str | None = None,
    timeout: float = 180,
    progress: Progress | None = None,
) -> None:
    """Install Kueue from `kueue_dir` (see `ensure`) and return once its webhooks answer.

    `kubectl` defaults to the one of hack/k8s/ensure.sh; `node_selector` places the manager's pod
    (say, on a node that no fault test loses: while it is down, the API server refuses every pod
    and Job its webhooks cover); `image` runs the manager from that image, which the nodes must
    hold (kind: `image_name(kueue_dir)`, hack/kueue/image.sh), instead of the host's binary;
    `progress` is told each step.
    """
    say = progress or (lambda _: None)
    kube = _Kubectl(kubectl or k8s_bin_dir() / "kubectl", kubeconfig)
    deadline = time.monotonic() + timeout
    crds = sorted((kueue_dir / "crd").glob("*.yaml"))
    say(f"kueue {version(kueue_dir)}: applying {len(crds)} CRDs")
    kube.apply([d for f in crds for d in _docs(f)])
    names = [f"crd/{d['metadata']['name']}" for f in crds for d in _docs(f)]
    kube("wait", "--for=condition=Established", f"--timeout={max(1, int(deadline - time.monotonic()))}s", *names)
    manager, webhooks = manifests(kueue_dir, _certs(kube), frameworks, external_frameworks, node_selector, image=image)
    say(f"applying the manager: {', '.join(sorted({d['kind'] for d in manager}))}")
    kube.apply(manager)
    left = max(1, int(deadline - time.monotonic()))
    say(f"waiting for deployment/{DEPLOYMENT} in {NAMESPACE}" + (f" ({image})" if image else ""))
    rollout = kube("rollout", "status", f"deployment/{DEPLOYMENT}", "-n", NAMESPACE, f"--timeout={left}s", check=False)
    if rollout.returncode != 0:
        raise RuntimeError(f"deployment/{DEPLOYMENT} is not ready: {rollout.stderr.strip()}\n{_manager_story(kube)}")
    say(f"applying the webhook configurations: {', '.join(d['metadata']['name'] for d in webhooks)}")
    kube.apply(webhooks)
    _wait_webhooks(kube, deadline)
    say("Kueue's webhooks answer")


def uninstall(
    kubeconfig: Path, *, kubectl: Path | None = None, timeout: float = 120, progress: Progress | None = None
) -> None:
    """Remove what `install` made, the webhook configurations first, and keep the CRDs (and with them
    any Kueue object left: delete those while Kueue runs, its finalizers need it)."""
    say = progress or (lambda _: None)
    kube = _Kubectl(kubectl or k8s_bin_dir() / "kubectl", kubeconfig)
    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())
    say("deleting Kueue's webhook configurations")
    kube("delete", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-l", selector,
         "--ignore-not-found")  # fmt: skip
    say(f"deleting namespace {NAMESPACE}")
    kube("delete", "namespace", NAMESPACE, "--ignore-not-found", f"--timeout={int(timeout)}s")
    kube("delete", "clusterroles,clusterrolebindings", "-l", selector, "--ignore-not-found")
