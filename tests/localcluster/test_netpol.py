"""NetworkPolicies are enforced in the local cluster's pod network (`elasticjob_localcluster.netpol`,
the kernel's nftables in the bridge's namespace): real pods, real connections."""

from __future__ import annotations

import json
import uuid

from tests.e2e.helpers import Kube, wait_for
from tests.localcluster.test_cluster import finished, pod, pod_json

SERVER = """
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', port)); s.listen(16)
    while True:
        c, _ = s.accept()
        if port == 8080:
            c.recv(1024); c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n')
        else:
            c.sendall(b'store')
        c.close()
threading.Thread(target=serve, args=(29400,), daemon=True).start()
serve(8080)
"""

CLIENT = """
import json, socket
out = {{}}
for port in (29400, 8080):
    try:
        socket.create_connection(({ip!r}, port), timeout=2).close()
        out[port] = 'connected'
    except socket.timeout:
        out[port] = 'timeout'
    except OSError as exc:
        out[port] = type(exc).__name__
open('/dev/termination-log', 'w').write(json.dumps(out))
"""


def reached(kube: Kube, ns: str, name: str, ip: str, labels: dict[str, str] | None = None) -> dict[str, str]:
    """Which of the store's ports a new pod `name` in `ns` could connect to."""
    kube.apply([pod(name, CLIENT.format(ip=ip), labels=labels or {"app": name})], ns)
    done = wait_for(lambda: finished(kube, ns, name), 60, f"{name} to finish", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Succeeded", kube.story(ns)
    result: dict[str, str] = json.loads(done["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    return result


def test_a_network_policy_admits_only_the_pods_and_port_it_names(kube: Kube, ns: str, other_ns: str) -> None:
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    store = pod("store", SERVER, labels={"app": "store"}, container={"readinessProbe": probe})
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "store"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "store"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "friend"}}}], "ports": [{"port": 29400}]}],
        },
    }
    kube.apply([policy, store], ns)

    def ready() -> str | None:
        status = pod_json(kube, ns, "store")["status"]
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        return status["podIP"] if ok else None

    # the readiness probe comes from the node, which a policy always admits
    ip = wait_for(ready, 60, "the store ready behind its policy", lambda: kube.story(ns))
    assert reached(kube, ns, "friend", ip, {"role": "friend"}) == {"29400": "connected", "8080": "timeout"}
    assert reached(kube, ns, "stranger", ip) == {"29400": "timeout", "8080": "timeout"}
    # the same label in another namespace: a podSelector alone matches in the policy's namespace only
    assert reached(kube, other_ns, "friend", ip, {"role": "friend"}) == {"29400": "timeout", "8080": "timeout"}

    kube.run("delete", "networkpolicy", "store", "-n", ns)
    after = wait_for(
        lambda: (r := reached(kube, ns, f"later-{uuid.uuid4().hex[:4]}", ip))["29400"] == "connected" and r,
        60, "the store open again once its policy is gone", lambda: kube.story(ns),
    )  # fmt: skip
    assert after == {"29400": "connected", "8080": "connected"}
