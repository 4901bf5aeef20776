"""Pinning on recorded sysfs trees of real machines (tests/data/sysfs)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from elasticjob_launcher.pinning import PinningError, plan, plan_for_launch
from elasticjob_launcher.pinning.topology import discover, parse_cpulist

SYSFS = Path(__file__).resolve().parents[1] / "data" / "sysfs"
ALL8 = {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}


def topo(name: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return discover(SYSFS / name, env=env or {}, use_nvml=False)


def test_discovery_reads_the_dgx() -> None:
    t = topo("h100-8gpu-2socket", ALL8)
    assert len(t.node_cpus) == 2 and len(t.node_cpus[0]) == 112
    assert [g.numa_node for g in t.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert t.gpus[4].bus_id == "0000:9a:00.0"
    assert t.siblings[0] == {0, 112} and len(t.allowed) == 224


def test_visible_devices_by_uuid() -> None:
    t = topo("h100-8gpu-2socket", {"NVIDIA_VISIBLE_DEVICES": "GPU-00000005-0000-0000-0000-000000000000"})
    assert [(g.index, g.numa_node, g.bus_id) for g in t.gpus] == [(0, 1, "0000:ab:00.0")]


@pytest.mark.parametrize(
    ("fixture", "env", "nproc"),
    [
        ("h100-8gpu-2socket", ALL8, 8),
        ("epyc-nps4-4gpu", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 4),
        ("gpus-on-one-node", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 4),
        ("h100-cpuset-socket0-part", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 4),
        ("cpu-only-2socket", {}, 4),
    ],
)
def test_exclusive_never_shares_and_stays_local(fixture: str, env: dict[str, str], nproc: int) -> None:
    t = topo(fixture, env)
    bindings = plan(t, nproc, "exclusive")
    seen: set[int] = set()
    for b in bindings:
        cpus = set(b.cpus)
        assert cpus and not cpus & seen, f"rank {b.local_rank} shares CPUs"
        assert cpus <= t.allowed
        seen |= cpus
        if b.gpu is not None and not b.reasons:
            assert cpus <= t.node_cpus[b.gpu.numa_node], "CPUs not local to the GPU"


def test_cpu_only_spreads_evenly_across_nodes() -> None:
    bindings = plan(topo("cpu-only-2socket"), 4, "exclusive")
    assert [b.numa_node for b in bindings] == [0, 0, 1, 1]
    assert all(len(b.cpus) == 8 for b in bindings)  # 4 whole cores each (2 threads per core)


def test_node_and_socket_modes() -> None:
    t = topo("epyc-nps4-4gpu", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    node = plan(t, 4, "node")
    assert [set(b.cpus) for b in node] == [t.node_cpus[i] for i in range(4)]
    socket = plan(t, 4, "socket")
    assert all(len(b.cpus) == 128 for b in socket)


def test_core_complex_gives_distinct_l3_groups() -> None:
    t = topo("epyc-nps4-4gpu", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    bindings = plan(t, 4, "core-complex")
    groups = [frozenset(g) for g in t.l3_groups]
    used: list[frozenset[int]] = []
    for b in bindings:
        mine = {g for g in groups if g & set(b.cpus)}
        assert all(g <= set(b.cpus) for g in mine)
        used.extend(mine)
    assert len(used) == len(set(used)) == 8  # 2 CCDs per worker, none shared


def test_core_complex_falls_back_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    t = topo("gpus-on-one-node", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    bindings = plan(t, 4, "core-complex")
    assert all("only 1 L3 groups on node 0 for 4 workers" in b.reasons[0] for b in bindings)


def test_unknown_numa_node_is_a_logged_fallback(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "m"
    shutil.copytree(SYSFS / "h100-8gpu-2socket", root)
    (root / "sys/bus/pci/devices/0000:18:00.0/numa_node").write_text("-1\n")
    bindings = plan(discover(root, env={"CUDA_VISIBLE_DEVICES": "0"}, use_nvml=False), 1, "node")
    assert "unknown NUMA node (-1)" in bindings[0].reasons[0]


def test_gpu_outside_the_cpuset() -> None:
    t = topo("h100-cpuset-socket0-part", {"CUDA_VISIBLE_DEVICES": "0,4"})
    assert t.allowed == parse_cpulist("0-15,112-127")
    bindings = plan(t, 2, "exclusive")
    assert not bindings[0].reasons
    assert "no CPU in this container's cpuset" in bindings[1].reasons[0]
    assert not set(bindings[0].cpus) & set(bindings[1].cpus)


def test_fewer_cpus_than_workers() -> None:
    t = topo("h100-cpuset-socket0-part", {})
    t.allowed = {0, 1}
    bindings = plan(t, 3, "exclusive")
    assert "only 2 CPUs for 3 workers" in bindings[0].reasons[0]


def test_more_workers_than_gpus() -> None:
    bindings = plan(topo("epyc-nps4-4gpu", {"CUDA_VISIBLE_DEVICES": "0"}), 2, "exclusive")
    assert "no GPU for local rank 1" in bindings[1].reasons[0]


def test_strict_mode_raises() -> None:
    with pytest.raises(PinningError, match="strict pinning"):
        plan(topo("gpus-on-one-node", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}), 4, "core-complex", strict=True)


def test_plan_for_launch_logs_each_binding_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        p = plan_for_launch("core-complex", 2, root=SYSFS / "gpus-on-one-node")
    lines = [r.message for r in caplog.records]
    assert sum("pinning (core-complex): local rank" in m for m in lines) == 2
    report = p.report()
    assert report["mode"] == "core-complex" and len(report["workers"]) == 2
    _, args = p.wrap("python", ["-u", "t.py"])
    assert args[:2] == ["-m", "elasticjob_launcher.pinning.exec"] and args[-3:] == ["python", "-u", "t.py"]
