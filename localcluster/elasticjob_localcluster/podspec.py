"""What a pod's spec resolves to on a fake node: its volumes' directories and its containers' environment.

`PodSpec.volume_dirs` makes each volume's directory (emptyDir under the pod's directory, hostPath
as given, configMap and secret files, projected service-account tokens, configMaps and
downwardAPI fields) and `PodSpec.env` a container's environment: the kubelet's base variables,
envFrom configMaps, values with `$(VAR)` expansion, fieldRefs and configMapKeyRefs. Both read
from the API (configMaps, secrets, token requests) and nothing else.
Limits: secret env sources, resourceFieldRefs and volume items' modes are not resolved; a
downward API field other than the common ones reads as "".
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from elasticjob_localcluster import network


@dataclass
class Settings:
    state: Path
    api_host: str
    api_port: int
    path_prefix: str  # put before PATH so `python`, `elasticjob-launch` resolve to the project env
    simulate: bool = False


@dataclass
class PodSpec:
    """One pod's spec, with what resolving it needs: the API, the pod's IP and its directory."""

    core: client.CoreV1Api
    pod: dict[str, Any]
    ip: str
    pod_dir: Path
    settings: Settings

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.pod["metadata"]["uid"])

    def volume_dirs(self) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for vol in self.pod["spec"].get("volumes") or []:
            path = self.pod_dir / "volumes" / vol["name"]
            if "hostPath" in vol:
                path = Path(vol["hostPath"]["path"])
                if vol["hostPath"].get("type", "") in ("", "DirectoryOrCreate"):
                    path.mkdir(parents=True, exist_ok=True)
            elif "emptyDir" in vol:
                path.mkdir(parents=True, exist_ok=True)
            elif "configMap" in vol:
                path.mkdir(parents=True, exist_ok=True)
                cm = self.core.read_namespaced_config_map(vol["configMap"]["name"], self.namespace)
                mode = int(vol["configMap"].get("defaultMode", 0o644))  # the kubelet's default, 0644
                for key, text in (cm.data or {}).items():
                    (path / key).write_text(text)
                    (path / key).chmod(mode)
            elif "projected" in vol:
                path.mkdir(parents=True, exist_ok=True)
                self.projected(vol["projected"], path)
            elif "secret" in vol:
                path.mkdir(parents=True, exist_ok=True)
                secret = self.core.read_namespaced_secret(vol["secret"]["secretName"], self.namespace)
                for key, encoded in (secret.data or {}).items():
                    (path / key).write_bytes(base64.b64decode(encoded))
            else:
                continue
            dirs[vol["name"]] = path
        return dirs

    def projected(self, projected: dict[str, Any], path: Path) -> None:
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                request = client.AuthenticationV1TokenRequest(
                    spec=client.V1TokenRequestSpec(
                        audiences=[sat["audience"]] if sat.get("audience") else [],
                        expiration_seconds=sat.get("expirationSeconds", 3607),
                        bound_object_ref=client.V1BoundObjectReference(kind="Pod", name=self.name, uid=self.uid),
                    )
                )
                sa = self.pod["spec"].get("serviceAccountName", "default")
                token = self.core.create_namespaced_service_account_token(sa, self.namespace, request)
                if token.status is None:
                    raise RuntimeError(f"no token issued for service account {sa}")
                (path / sat.get("path", "token")).write_text(token.status.token)
            elif "configMap" in source:
                cm = self.core.read_namespaced_config_map(source["configMap"]["name"], self.namespace)
                for item in source["configMap"].get("items") or [{"key": k, "path": k} for k in cm.data or {}]:
                    (path / item["path"]).write_text((cm.data or {}).get(item["key"], ""))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    (path / item["path"]).write_text(self.field(item.get("fieldRef", {}).get("fieldPath", "")))

    def field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.podIP": self.ip,
            "status.hostIP": network.GATEWAY,
        }
        if path in simple:
            return str(simple[path])
        match = re.match(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
        return ""

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {
            "PATH": f"{self.settings.path_prefix}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": self.settings.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.settings.api_port),
            "LANG": "C.UTF-8",
        }
        for src in container.get("envFrom") or []:
            if "configMapRef" in src:
                cm = self.core.read_namespaced_config_map(src["configMapRef"]["name"], self.namespace)
                env.update({src.get("prefix", "") + k: v for k, v in (cm.data or {}).items()})
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = re.sub(
                    r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), item["value"]
                )
            elif "valueFrom" in item:
                ref = item["valueFrom"]
                if "fieldRef" in ref:
                    env[item["name"]] = self.field(ref["fieldRef"]["fieldPath"])
                elif "configMapKeyRef" in ref:
                    cm = self.core.read_namespaced_config_map(ref["configMapKeyRef"]["name"], self.namespace)
                    env[item["name"]] = (cm.data or {}).get(ref["configMapKeyRef"]["key"], "")
        return env
