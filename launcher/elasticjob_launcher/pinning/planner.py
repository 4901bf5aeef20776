"""Pure planning: which GPU, CPUs and memory node each local worker gets, and why not better.

Modes (torch's AffinityMode names): `node` all allowed CPUs of the GPU's NUMA node; `socket` all
allowed CPUs of its socket; `exclusive` the node's allowed CPUs split between the workers on that
node without overlap, whole physical cores first; `core-complex` one L3 group (CCX/CCD) per
worker. Without GPUs, workers are spread evenly across the NUMA nodes the cpuset allows.
Every compromise is recorded as a reason (and logged by the caller); `strict` turns a reason into
an error instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elasticjob_launcher.pinning.topology import Gpu, Topology, format_cpulist

MODES = ("none", "node", "socket", "exclusive", "core-complex")


class PinningError(ValueError):
    """Strict pinning could not be satisfied."""


@dataclass(frozen=True)
class WorkerBinding:
    local_rank: int
    cpus: tuple[int, ...]
    numa_node: int | None
    gpu: Gpu | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        gpu = f"GPU {self.gpu.ident} ({self.gpu.bus_id or 'bus unknown'})" if self.gpu else "no GPU"
        return f"local rank {self.local_rank}: {gpu}, NUMA node {self.numa_node}, CPUs {format_cpulist(set(self.cpus))}"


def _cores(cpus: set[int], topo: Topology) -> list[list[int]]:
    """CPUs grouped by physical core (SMT siblings together), in CPU order."""
    seen: set[int] = set()
    cores = []
    for cpu in sorted(cpus):
        if cpu in seen:
            continue
        core = sorted(topo.siblings.get(cpu, {cpu}) & cpus) or [cpu]
        seen.update(core)
        cores.append(core)
    return cores


def _split(cpus: set[int], parts: int, topo: Topology) -> tuple[list[list[int]], str | None]:
    """Disjoint shares of `cpus` for `parts` workers: whole cores first, then threads."""
    cores = _cores(cpus, topo)
    if len(cores) >= parts:
        shares: list[list[int]] = [[] for _ in range(parts)]
        per, extra = divmod(len(cores), parts)
        start = 0
        for i in range(parts):
            take = per + (1 if i < extra else 0)
            for core in cores[start : start + take]:
                shares[i].extend(core)
            start += take
        return shares, None
    flat = sorted(cpus)
    if len(flat) >= parts:
        per, extra = divmod(len(flat), parts)
        out, start = [], 0
        for i in range(parts):
            take = per + (1 if i < extra else 0)
            out.append(flat[start : start + take])
            start += take
        return out, f"only {len(cores)} physical cores for {parts} workers: splitting hardware threads"
    if not flat:
        return [[] for _ in range(parts)], "no CPU available"
    return [[flat[i % len(flat)]] for i in range(parts)], f"only {len(flat)} CPUs for {parts} workers: CPUs are shared"


def plan(topo: Topology, nproc: int, mode: str, strict: bool = False) -> list[WorkerBinding]:
    if mode not in MODES:
        raise ValueError(f"unknown pinning mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "none" or nproc < 1:
        return []
    allowed = topo.allowed or set().union(*topo.node_cpus.values())
    node_allowed = {n: cpus & allowed for n, cpus in topo.node_cpus.items()}
    usable = [n for n in sorted(node_allowed) if node_allowed[n]]
    reasons: dict[int, list[str]] = {i: [] for i in range(nproc)}
    nodes: dict[int, int] = {}
    gpus: dict[int, Gpu | None] = {}
    if not usable:
        raise PinningError("no allowed CPU on any NUMA node")
    for i in range(nproc):
        gpu = topo.gpus[i] if i < len(topo.gpus) else None
        gpus[i] = gpu
        if topo.gpus and gpu is None:
            reasons[i].append(f"{len(topo.gpus)} visible GPUs for {nproc} workers: no GPU for local rank {i}")
        fallback = usable[i * len(usable) // nproc]
        if gpu is None:
            nodes[i] = fallback
        elif gpu.numa_node < 0:
            reasons[i].append(f"GPU {gpu.ident} has an unknown NUMA node (-1): using node {fallback}")
            nodes[i] = fallback
        elif not node_allowed.get(gpu.numa_node):
            reasons[i].append(
                f"GPU {gpu.ident} is on NUMA node {gpu.numa_node}, which has no CPU in this container's cpuset: "
                f"using node {fallback}"
            )
            nodes[i] = fallback
        else:
            nodes[i] = gpu.numa_node
    cpus: dict[int, list[int]] = {}
    by_node: dict[int, list[int]] = {}
    for i, n in nodes.items():
        by_node.setdefault(n, []).append(i)
    for n, workers in by_node.items():
        pool = node_allowed[n]
        if mode == "node":
            for i in workers:
                cpus[i] = sorted(pool)
        elif mode == "socket":
            sockets = {topo.cpu_socket.get(c, 0) for c in pool}
            for i in workers:
                cpus[i] = sorted(c for c in allowed if topo.cpu_socket.get(c, 0) in sockets)
        elif mode == "core-complex":
            groups = [sorted(g & pool) for g in topo.l3_groups if g & pool]
            if len(groups) >= len(workers):
                per = len(groups) // len(workers)
                for k, i in enumerate(workers):
                    cpus[i] = sorted(c for g in groups[k * per : (k + 1) * per] for c in g)
            else:
                shares, why = _split(pool, len(workers), topo)
                for i, share in zip(workers, shares, strict=True):
                    cpus[i] = share
                    reasons[i].append(
                        f"only {len(groups)} L3 groups on node {n} for {len(workers)} workers: exclusive split instead"
                        + (f" ({why})" if why else "")
                    )
        else:  # exclusive
            shares, why = _split(pool, len(workers), topo)
            for i, share in zip(workers, shares, strict=True):
                cpus[i] = share
                if why:
                    reasons[i].append(why)
    out = [WorkerBinding(i, tuple(cpus[i]), nodes[i], gpus[i], tuple(reasons[i])) for i in range(nproc)]
    problems = [r for b in out for r in b.reasons]
    if strict and problems:
        raise PinningError("strict pinning: " + "; ".join(problems))
    return out
