"""The local cluster's NetworkPolicy compiler: networking.k8s.io/v1 ingress semantics, and the
nftables table it renders (loaded into a real kernel by tests/localcluster/test_netpol.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from elasticjob_localcluster import netpol
from elasticjob_localcluster.netpol import Allow, Pod

STORE = Pod("a", "store", "10.244.1.1", {"role": "store", "job": "j"}, {"c10d": ("TCP", 29400)})
WORKER = Pod("a", "worker", "10.244.1.2", {"role": "worker", "job": "j"}, {})
OTHER_JOB = Pod("a", "other", "10.244.1.3", {"role": "worker", "job": "k"}, {})
ELSEWHERE = Pod("b", "worker", "10.244.1.4", {"role": "worker", "job": "j"}, {})
PODS = [STORE, WORKER, OTHER_JOB, ELSEWHERE]
NAMESPACES = {"a": {"team": "x"}, "b": {"team": "y"}}


def policy(spec: dict[str, Any], namespace: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def store_policy(**rule: Any) -> dict[str, Any]:
    return policy({"podSelector": {"matchLabels": {"role": "store"}}, "ingress": [rule]})


def test_selectors_follow_label_selector_semantics() -> None:
    labels = {"a": "1", "b": "2"}
    assert netpol.selects({}, labels) and netpol.selects(None, {})
    assert netpol.selects({"matchLabels": {"a": "1"}}, labels)
    assert not netpol.selects({"matchLabels": {"a": "2"}}, labels)
    expr = [{"key": "a", "operator": "In", "values": ["1", "3"]}, {"key": "c", "operator": "DoesNotExist"}]
    assert netpol.selects({"matchExpressions": expr}, labels)
    assert not netpol.selects({"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["2"]}]}, labels)
    assert not netpol.selects({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels)


def test_a_pod_selector_admits_its_namespaces_matching_pods_to_the_port() -> None:
    rule = {"from": [{"podSelector": {"matchLabels": {"job": "j", "role": "worker"}}}], "ports": [{"port": 29400}]}
    got = netpol.compile_ingress([store_policy(**rule)], PODS, NAMESPACES)
    assert got == {STORE.ip: [Allow((WORKER.ip,), (), (("TCP", 29400, 29400),))]}


def test_only_selected_pods_are_isolated_and_an_egress_only_policy_isolates_none() -> None:
    egress = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    assert netpol.compile_ingress([egress], PODS, NAMESPACES) == {}
    deny_all = policy({"podSelector": {}})  # no ingress rules: every pod of namespace a admits nothing
    assert netpol.compile_ingress([deny_all], PODS, NAMESPACES) == {p.ip: [] for p in PODS if p.namespace == "a"}


def test_namespace_selector_ip_block_empty_from_and_named_ports() -> None:
    by_ns = {
        "from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"job": "j"}}}]
    }
    assert netpol.compile_ingress([store_policy(**by_ns)], PODS, NAMESPACES)[STORE.ip] == [
        Allow((ELSEWHERE.ip,), (), None)
    ]
    block = {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}]}
    assert netpol.compile_ingress([store_policy(**block)], PODS, NAMESPACES)[STORE.ip] == [
        Allow(("10.0.0.0/8",), ("10.244.0.0/16",), None)
    ]
    named = {"ports": [{"port": "c10d"}, {"port": 9000, "endPort": 9010, "protocol": "UDP"}]}
    assert netpol.compile_ingress([store_policy(**named)], PODS, NAMESPACES)[STORE.ip] == [
        Allow(None, (), (("TCP", 29400, 29400), ("UDP", 9000, 9010)))
    ]
    missing = {"ports": [{"port": "nope"}]}
    assert netpol.compile_ingress([store_policy(**missing)], PODS, NAMESPACES)[STORE.ip] == []


def test_peers_matching_no_pod_admit_nothing() -> None:
    rule = {"from": [{"podSelector": {"matchLabels": {"job": "absent"}}}]}
    assert netpol.compile_ingress([store_policy(**rule)], PODS, NAMESPACES) == {STORE.ip: []}


def test_the_table_drops_what_no_rule_admits_and_passes_established_and_node_traffic() -> None:
    isolated = {STORE.ip: [Allow((WORKER.ip,), (), (("TCP", 29400, 29400),))], WORKER.ip: []}
    text = netpol.render(isolated, netpol.LOCAL_TRUSTED)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:3] == ["table inet ejnetpol {}", "delete table inet ejnetpol", "table inet ejnetpol {"]
    forward = lines[lines.index("chain forward {") :]
    assert forward[1:6] == [
        "type filter hook forward priority 0; policy accept;",
        "ct state established,related accept",
        "ip saddr { 10.244.0.1 } accept",
        f"ip daddr {STORE.ip} jump ingress-0",
        f"ip daddr {WORKER.ip} jump ingress-1",
    ]
    store_chain = lines[lines.index("chain ingress-0 {") + 1 : lines.index("chain ingress-1 {")]
    assert store_chain == [f"ip saddr {{ {WORKER.ip} }} meta l4proto tcp th dport 29400 accept", "drop", "}"]
    assert lines[lines.index("chain ingress-1 {") + 1] == "drop"


def test_the_trusted_sources_are_a_parameter() -> None:
    """kind's enforcer trusts every node's InternalIP and bridge gateway; none at all is allowed too."""
    text = netpol.render({}, ["172.18.0.3", "10.250.1.1", "172.18.0.2/32", "10.250.1.1"])
    assert "    ip saddr { 10.250.1.1, 172.18.0.2, 172.18.0.3 } accept" in text.splitlines()
    assert "saddr" not in netpol.render({STORE.ip: []}, [])


def test_the_enforcer_loads_with_its_command_only_when_the_table_changes(tmp_path: Path) -> None:
    fake = tmp_path / "nft"
    fake.write_text(f'#!/bin/sh\necho "$@" >>{tmp_path}/calls; cat >>{tmp_path}/tables\n')
    fake.chmod(0o755)
    firsts: list[bool] = []
    enforcer = netpol.Enforcer([str(fake), "-f", "-"], first_load=lambda: firsts.append(True))
    isolated = {STORE.ip: [Allow((WORKER.ip,), (), None)]}
    assert enforcer.apply(isolated, ["172.18.0.2"])
    assert not enforcer.apply(isolated, ["172.18.0.2"])
    assert enforcer.apply(isolated, ["172.18.0.2", "172.18.0.3"])  # a node joined: loaded again
    assert (tmp_path / "calls").read_text() == "-f -\n-f -\n"
    assert (tmp_path / "tables").read_text().count("delete table inet ejnetpol") == 2
    assert firsts == [True]


def test_pod_from_api_reads_labels_and_named_ports() -> None:
    obj = {
        "metadata": {"namespace": "a", "name": "s", "labels": {"x": "1"}},
        "spec": {"containers": [{"ports": [{"name": "c10d", "containerPort": 29400}, {"containerPort": 1}]}]},
    }
    assert netpol.pod_from_api(obj, "10.244.1.9") == Pod("a", "s", "10.244.1.9", {"x": "1"}, {"c10d": ("TCP", 29400)})
