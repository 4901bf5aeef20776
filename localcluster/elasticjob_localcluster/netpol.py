"""NetworkPolicy enforcement with the kernel's nftables: the local cluster's, and kind's.

In the local cluster every pod-to-pod frame is bridged inside the network namespace `ejnet0`
(network.py). With br_netfilter's switch on in that namespace only, bridged IPv4 packets pass its
`forward` hook. On a kind node (hack/kind/cni/kind-netpol) same-node pod traffic is bridged with
br_netfilter on and cross-node traffic is routed, so the node's `forward` hook sees both. There
one nftables table, `inet ejnetpol`, holds the policies, in a forward chain of its own (priority
0, policy accept: it only ever drops packets to isolated pods, and leaves other tables' rules,
kube-proxy's and the CNI's, alone):

1. Packets of connections already allowed (`ct state established,related`) pass: policies
   judge new connections, as every implementation does.
2. Packets from the trusted sources pass: NetworkPolicy always allows a pod's own node (its
   probes, the API server). `render`'s `trusted`: on the local cluster `LOCAL_TRUSTED`, the
   nodes' address 10.244.0.1; on kind every node's InternalIP and bridge gateway.
3. A packet to a pod that no policy selects for Ingress passes.
4. A packet to a pod that policies select jumps to that pod's chain: it passes if any ingress
   rule of any of those policies admits its source and its port, and is dropped otherwise.

`compile_ingress` turns the API's NetworkPolicies, pods and namespaces into each isolated pod's
allowed (sources, ports) pairs, following networking.k8s.io/v1: a rule's `from` peers are
podSelector (the policy's namespace), namespaceSelector (with an optional podSelector inside it)
or ipBlock (cidr less `except`); an empty `from` admits every source, empty `ports` every port;
ports are numbers or names of the destination pod's containerPorts, with an optional `endPort`.
`render` writes the table; `Enforcer.apply` loads it in one `nft -f` transaction (delete and
recreate) with the Enforcer's command (`LOCAL_NFT`: in `ejnet0`; kind: `nft -f -` in the node's
namespace), and only when it changed. The local node agent calls it every loop, and before
starting a new pod's containers, so a new pod's first packets already meet the policy; kind's
enforcer polls the API every 2 s.
Standard library only (with network.py, which is too): kind's enforcer image copies both.

Limits: Ingress only (an Egress policy type is accepted and not enforced); IPv4; SCTP ports are
matched like TCP/UDP ones; pods on simulate-mode nodes have no traffic to filter.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from elasticjob_localcluster import network

TABLE = "ejnetpol"
#: the local cluster's sources a policy always admits: the nodes' address (host, probes, API server)
LOCAL_TRUSTED = (network.GATEWAY,)
#: how the local cluster loads a table: nft in the pod network's namespace, the table on stdin
LOCAL_NFT = ("ip", "netns", "exec", network.NET_NS, "nft", "-f", "-")


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, matchExpressions) against labels; `{}` selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    labels: dict[str, str]
    #: containerPort names → (protocol, number), for named ports
    ports: dict[str, tuple[str, int]]


def pod_from_api(obj: dict[str, Any], ip: str) -> Pod:
    ports = {
        p["name"]: (p.get("protocol", "TCP"), int(p["containerPort"]))
        for c in (obj.get("spec") or {}).get("containers") or []
        for p in c.get("ports") or []
        if p.get("name")
    }
    meta = obj["metadata"]
    return Pod(meta["namespace"], meta["name"], ip, dict(meta.get("labels") or {}), ports)


@dataclass(frozen=True)
class Allow:
    """One ingress rule, resolved: sources (None: any) to ports (None: any)."""

    sources: tuple[str, ...] | None  # addresses or one CIDR (never empty)
    excepts: tuple[str, ...]  # CIDRs carved out of an ipBlock's
    ports: tuple[tuple[str, int, int], ...] | None  # (protocol, first, last)


def _peers(
    peers: list[dict[str, Any]], policy_ns: str, pods: list[Pod], namespaces: dict[str, dict[str, str]]
) -> list[Allow]:
    """A rule's `from`: the pods its selectors match as one source set, each ipBlock on its own."""
    allows, matched = [], set()
    for peer in peers:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            cidr = str(ipaddress.ip_network(block["cidr"], strict=False))
            excepts = tuple(sorted(str(ipaddress.ip_network(e, strict=False)) for e in block.get("except") or []))
            allows.append(Allow((cidr,), excepts, None))
            continue
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        for pod in pods:
            in_ns = (
                selects(ns_sel, namespaces.get(pod.namespace, {})) if ns_sel is not None else pod.namespace == policy_ns
            )
            if in_ns and selects(pod_sel, pod.labels):
                matched.add(pod.ip)
    if matched:
        allows.append(Allow(tuple(sorted(matched, key=ipaddress.ip_address)), (), None))
    return allows


def _ports(ports: list[dict[str, Any]], target: Pod) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in ports:
        protocol, port = p.get("protocol", "TCP"), p.get("port")
        if port is None:
            out.append((protocol, 1, 65535))
        elif isinstance(port, str) and not port.isdigit():
            named = target.ports.get(port)
            if named is not None and named[0] == protocol:
                out.append((protocol, named[1], named[1]))
        else:
            out.append((protocol, int(port), int(p.get("endPort") or port)))
    return tuple(sorted(set(out)))


def compile_ingress(
    policies: Iterable[dict[str, Any]], pods: list[Pod], namespaces: dict[str, dict[str, str]]
) -> dict[str, list[Allow]]:
    """Each isolated pod's IP → the rules that admit traffic to it (an empty list admits nothing)."""
    isolated: dict[str, list[Allow]] = {}
    for policy in policies:
        meta, spec = policy["metadata"], policy.get("spec") or {}
        types = spec.get("policyTypes") or ["Ingress"]
        if "Ingress" not in types:
            continue
        for target in pods:
            if target.namespace != meta["namespace"] or not selects(spec.get("podSelector"), target.labels):
                continue
            rules = isolated.setdefault(target.ip, [])
            for rule in spec.get("ingress") or []:
                peers = rule.get("from")
                allows = [Allow(None, (), None)] if not peers else _peers(peers, meta["namespace"], pods, namespaces)
                ports = _ports(rule["ports"], target) if rule.get("ports") else None
                if ports == ():  # only named ports this pod does not have: admits nothing
                    continue
                rules += [Allow(a.sources, a.excepts, ports) for a in allows]
    return isolated


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def _rule(allow: Allow) -> list[str]:
    match = ""
    if allow.excepts:
        match += f"ip saddr != {_set(allow.excepts)} "
    if allow.sources is not None:
        match += f"ip saddr {_set(allow.sources)} "
    if allow.ports is None:
        return [f"{match}accept"]
    lines = []
    for protocol, first, last in allow.ports:
        span = str(first) if first == last else f"{first}-{last}"
        lines.append(f"{match}meta l4proto {protocol.lower()} th dport {span} accept")
    return lines


def render(isolated: dict[str, list[Allow]], trusted: Iterable[str]) -> str:
    """The nftables table for `isolated` (compile_ingress's result), as one `nft -f` transaction.

    `trusted`: addresses or CIDRs always admitted (a pod's own node, whence its probes come)."""
    sources = sorted({str(ipaddress.ip_network(t, strict=False)) for t in trusted}, key=ipaddress.ip_network)
    lines = [
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        "    ct state established,related accept",
    ]
    if sources:
        lines.append(f"    ip saddr {_set(src.removesuffix('/32') for src in sources)} accept")
    chains = []
    for n, ip in enumerate(sorted(isolated, key=ipaddress.ip_address)):
        lines.append(f"    ip daddr {ip} jump ingress-{n}")
        body = [f"    {line}" for allow in isolated[ip] for line in _rule(allow)]
        chains += [f"  chain ingress-{n} {{", *body, "    drop", "  }"]
    lines += ["  }", *chains, "}"]
    return "\n".join(lines) + "\n"


def set_bridge_netfilter(on: bool) -> None:
    """br_netfilter's switch for bridged IPv4 in NET_NS only (the root namespace's is left alone)."""
    value = "1" if on else "0"
    subprocess.run(
        ["ip", "netns", "exec", network.NET_NS, "sh", "-c",
         f"echo {value} > /proc/sys/net/bridge/bridge-nf-call-iptables"],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ip", "-n", network.NET_NS, "link", "set", network.BRIDGE, "type", "bridge", "nf_call_iptables", value],
        check=True,
    )


class Enforcer:
    """Loads `render`'s table with `command` (nft reading it on stdin) whenever it changes.

    `command`: `LOCAL_NFT` on the local cluster, `("nft", "-f", "-")` on a kind node (host network).
    `first_load` runs once, after the first table is in place: the local cluster turns
    br_netfilter on in its pod network's namespace (`set_bridge_netfilter`); a kind node has it on."""

    def __init__(self, command: Sequence[str], first_load: Callable[[], None] | None = None) -> None:
        self.command = list(command)
        self.first_load = first_load
        self.loaded: str | None = None

    def apply(self, isolated: dict[str, list[Allow]], trusted: Iterable[str]) -> bool:
        """Load the table for `isolated` and `trusted` (see `render`) unless it is the one loaded;
        True if it was loaded."""
        text = render(isolated, trusted)
        if text == self.loaded:
            return False
        subprocess.run(self.command, input=text, text=True, check=True, capture_output=True)
        if self.loaded is None and self.first_load is not None:
            self.first_load()
        self.loaded = text
        return True
