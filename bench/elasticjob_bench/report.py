"""Turn a results dict into `docs/benchmarks.md` and PNG plots (matplotlib, headless)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TRAFFIC = ("state_reads_per_join", "cas_writes_per_join", "failed_cas_per_join", "state_bytes_per_join")

GOALS = {
    "b1": "overhead <= 3 s over plain torchrun",
    "b2a": "<= 10 s",
    "b2b": "<= 10 s",
    "b2c": "<= 20 s",
    "b5": "< 2 s",
    "b3": "64 agents <= 3 s, 128 <= 6 s, 256 <= 15 s, no livelock",
    "b4": "1,000 jobs Running in < 60 s, operator RSS < 300 MiB",
    "b6": "<= 20 s with the default lease",
}
B4_GOAL_S, B4_GOAL_RSS = 60.0, 300.0
B3_GOALS = {64: 3.0, 128: 6.0, 256: 15.0}
B2_GOALS = {"b2a": 10.0, "b2b": 10.0, "b2c": 20.0}
B2_PARTS = {
    "replacement_created_s": "replacement pod created",
    "replacement_running_s": "replacement pod Running",
    "first_worker_started_s": "first worker process started",
    "all_workers_started_s": "last worker process started",
    "process_group_formed_s": "process group formed everywhere",
    "recovery_s": "first step of the new group done everywhere",
}


def plots(results: dict[str, Any], out: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if "b3" in results:
        fig, ax = plt.subplots(figsize=(6, 4))
        rows = results["b3"]["rows"]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            pts = [(r["nodes"], r["median_s"]) for r in rows if r["variant"] == variant and r["median_s"]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=variant)
        goal = sorted(B3_GOALS.items())
        ax.plot(*zip(*goal, strict=True), linestyle="--", color="grey", label="goal")
        ax.set(xlabel="agents", ylabel="seconds to complete the rendezvous (median)", title="B3 rendezvous scale")
        ax.legend()
        path = out / f"{stem}-b3.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        made.append(path)
    if "b1" in results:
        b1 = results["b1"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar(["torchrun (baseline)", "ElasticJob"], [b1["torchrun_s"], b1["elasticjob_s"]], color=["grey", "C0"])
        ax.set(ylabel="seconds to step 1 (median)", title=f"B1 launch, {b1['shape']}")
        path = out / f"{stem}-b1.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        made.append(path)
    if "b4" in results:
        rows = results["b4"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        series = [("direct_all_running_s", "direct pods Running (baseline)", "grey"),
                  ("all_pods_s", "operator: all pods exist", "C1"),
                  ("all_running_s", "operator: all jobs Running", "C0")]  # fmt: skip
        width = 0.8 / len(series)
        for i, (key, label, color) in enumerate(series):
            xs = [j + (i - 1) * width for j in range(len(rows))]
            ax.bar(xs, [r[key] or 0 for r in rows], width, label=label, color=color)
        ax.set_xticks(range(len(rows)), [f"{r['jobs']} jobs" for r in rows])
        ax.set(ylabel="seconds from the first create (median)", title="B4 operator scale")
        ax.legend()
        path = out / f"{stem}-b4.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        made.append(path)
    return made


def _b3_not_run(b3: dict[str, Any]) -> list[str]:
    """A line on sizes a variant was not given (--quick leaves out stock at 256 agents)."""
    sizes: dict[str, list[int]] = b3.get("sizes") or {}
    every = sorted({n for ns in sizes.values() for n in ns})
    left = [f"{v} at {n} agents" for v, ns in sizes.items() for n in every if n not in ns]
    if not left:
        return []
    return [
        f"Not run: {', '.join(left)} (`--quick` leaves out what does not finish within the join timeout on a "
        "2-core machine; `make bench` runs every size).",
        "",
    ]


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def _b2(results: dict[str, Any]) -> list[str]:
    b2a, b5 = results["b2a"], results["b5"]
    faults = [f for f in B2_GOALS if f in results]
    lines = [
        "## B2 recovery, B5 status freshness",
        "",
        "The B1 jobs go on: each ElasticJob takes the three faults in turn, each once every rank of the "
        "current worker group has passed step 30 (600 steps of 50 ms per group). Recovery: from the fault to "
        "every rank finishing the first step of the restarted worker group. Baseline (B2a only): the same kill "
        "in each torchrun round (`--max-restarts 3`, 4 local agents). Freshness: from the B2a kill to "
        "`status.restarts.total` rising.",
        "",
        "| | fault | torchrun (baseline) | ElasticJob | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for f in faults:
        r, goal = results[f], B2_GOALS[f]
        base, ratio = (f"{r['torchrun_s']} s", r["ratio"]) if "torchrun_s" in r else ("-", "-")
        lines.append(
            f"| {f.upper()} | {r['fault']} | {base} | {r['elasticjob_s']} s | {ratio} | "
            f"<= {goal:g} s: {_met(r['elasticjob_s'] <= goal)} |"
        )
    lines += [
        f"| B5 | status freshness | - | {b5['status_s']} s | - | {GOALS['b5']}: {_met(b5['status_s'] < 2)} |",
        "",
        "Where the time goes (medians, seconds after the fault; a worker start is logged as its script "
        "starts: before `import torch` under torchrun, after it for ElasticJob's preloaded workers, "
        "docs/launcher.md):",
        "",
        "| part | " + " | ".join(f.upper() for f in faults) + " | B2A torchrun |",
        "|---|" + "---|" * (len(faults) + 1),
    ]
    for key, label in B2_PARTS.items():
        cells = [results[f]["parts"].get(key) for f in faults] + [b2a.get("torchrun_parts", {}).get(key)]
        lines.append(f"| {label} | " + " | ".join("-" if c is None else f"{c}" for c in cells) + " |")
    lines += [
        "",
        "Runs: "
        + "; ".join(f"{f.upper()} {results[f]['runs']}" for f in faults)
        + f"; B2A torchrun {b2a.get('torchrun_runs')}; freshness {b5['runs']}.",
        "",
        "The torchrun baseline runs with `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`, as the launcher does. "
        "Stock torchrun (workers sharing the rendezvous store) in the same run: "
        + (
            f"recovered in {stock['recovery_s']:.3f} s."
            if "recovery_s" in (stock := results.get("b2a_stock_torchrun") or {})
            else "did not recover: every agent exited before any rank finished a step after the kill."
            if stock
            else "not run."
        ),
        "",
    ]
    return lines


def _b5b(b: dict[str, Any]) -> list[str]:
    lines = [
        "## B5b store throughput under a rendezvous",
        "",
        f"{b['clients']} client processes run `add` round-trips on the project's store for {b['window_s']} s; "
        f"baseline: the idle store, in the same run. Loaded: the same window while {b['agents']} agents "
        "rendezvous again and again, back to back, with torch's c10d handler and with the launcher's own; "
        "each agent keeps its store connections across rendezvous (all opened before the first window), so "
        "the load is rendezvous traffic, not connection set-up. All processes share this machine's cores, "
        "so the figures include the agents' and clients' CPU contention.",
        "",
        "| store | ops/s | ratio vs idle | p50 | p99 | p99 ratio vs idle | rendezvous in the window "
        "| client ops lost per rendezvous |",
        "|---|---|---|---|---|---|---|---|",
        f"| idle (baseline) | {b['idle']['ops_per_s']:.0f} | 1.0 | {b['idle']['p50_ms']} ms | {b['idle']['p99_ms']} ms "
        "| 1.0 | - | - |",
    ]
    for variant in ("stock", "elasticjob"):
        m = b[f"during_{variant}"]
        done = m["rendezvous_per_window"]
        lost = (b["idle"]["ops_per_s"] - m["ops_per_s"]) * b["window_s"] / done if done else None
        lines.append(
            f"| during {variant} rendezvous | {m['ops_per_s']:.0f} | {m['ops_ratio_vs_idle']} | {m['p50_ms']} ms | "
            f"{m['p99_ms']} ms | {m['p99_ratio_vs_idle']} | {done:g} | {'-' if lost is None else f'{lost:.0f}'} |"
        )
    lines += [
        "",
        "Back to back, the faster handler completes more rendezvous in the window and so loads the shared "
        "cores more; the last column puts both on the same footing: the clients' lost operations per "
        "completed rendezvous.",
    ]
    return [*lines, ""]


def _b4(b: dict[str, Any]) -> list[str]:
    runs = ", ".join(f"{len(r['runs'])} at {r['jobs']}" for r in b["rows"])
    lines = [
        "## B4 operator scale",
        "",
        "N ElasticJobs (2 workers each, so 3N pods with the stores) created from 8 threads on a fresh local "
        "control plane whose simulate-mode nodes report pods Running without running them; the operator "
        "runs from its chart on a real node of the same cluster. Baseline, same run and cluster: the "
        "same 3N pods created directly by the benchmark before the operator is installed. Requests: "
        "what the apiserver dispatched for the operator's ServiceAccount (flow schema `service-accounts`) "
        "from the first create until every job was Running; quiet: the same over the following "
        "window, per job and minute. Reconcile latency: per job, from its create to the operator's first "
        "status write, and to Running. The scheduler runs with "
        f"`{' '.join(b['scheduler_flags'])}`; runs per size: {runs}, each on a fresh cluster.",
        "",
        "| jobs | direct pods Running (baseline) | all pods exist | all jobs Running | ratio vs direct "
        "| operator peak RSS (max) | operator RSS after | operator CPU | requests/job | quiet requests/job/min "
        "| first reconcile p50 / p99 | Running p50 / p99 | operator CPU idle | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in b["rows"]:
        goal = "-"
        if r["jobs"] == 1000:
            ok = r["all_running_s"] is not None and r["all_running_s"] < B4_GOAL_S
            goal = f"{GOALS['b4']}: {_met(ok and r['peak_rss_max_mib'] < B4_GOAL_RSS)}"

        def s_(v: Any) -> str:
            return "did not finish" if v is None else f"{v} s"

        lines.append(
            f"| {r['jobs']} | {s_(r['direct_all_running_s'])} | {s_(r['all_pods_s'])} | {s_(r['all_running_s'])} "
            f"({r['finished']}/{len(r['runs'])} finished) | {r['ratio_vs_direct'] or '-'} "
            f"| {r['peak_rss_mib']} MiB ({r['peak_rss_max_mib']}) | {_mib(r.get('rss_after_mib'))} "
            f"| {r['operator_cpu_s']} s "
            f"| {r['requests_per_job']} | {r['quiet_requests_per_job_per_min']} "
            f"| {r['first_reconcile_p50_ms']} / {r['first_reconcile_p99_ms']} ms "
            f"| {r['running_p50_ms']} / {r['running_p99_ms']} ms | {_pct(r.get('idle_cpu_pct'))} | {goal} |"
        )
    lines += [
        "",
        "Operator RSS after: after the quiet window (what stays; the rest of the peak was transient). "
        "Operator CPU idle: its share of one core over the quiet window, every job Running. "
        "Requests per job to what the operator writes (every client's, from `apiserver_request_total`; "
        "the benchmark's own creates are the `POST elasticjobs` not listed):",
        "",
    ]
    for r in b["rows"]:
        writes = r.get("writes_per_job") or {}
        listed = ", ".join(f"{k} {v}" for k, v in writes.items()) or "not measured"
        lines.append(f"- {r['jobs']} jobs: {listed}")
    return [*lines, ""]


def _runs(results: dict[str, Any]) -> str:
    """When and how the results were measured: one run, or several of the same day merged."""
    runs = results.get("runs") or [{"date": results["date"], "args": "--quick" if results.get("quick") else ""}]
    return "; ".join(f"{r['date']} (`python -m elasticjob_bench {r['args']}`)".replace(" `)", "`)") for r in runs)


def _mib(v: Any) -> str:
    return "-" if v is None else f"{v} MiB"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v} %"


def _b6(b: dict[str, Any]) -> list[str]:
    lease = b["lease_s"]
    lines = [
        "## B6 operator failover",
        "",
        "Two operator replicas with leader election (lease "
        f"{lease['leaseDuration']} s, renew deadline {lease['renewDeadline']} s, retry {lease['retryPeriod']} s: "
        "the chart's defaults) and one job on a simulated node. Each run changes the job's spec and times "
        "until its `status.observedGeneration` shows a reconcile saw it; right before the change, the leader "
        "pod is deleted (`deleted`: a clean stop, which releases the lease) or its processes are stopped "
        "with SIGSTOP (`hung`: the standby waits for the lease to expire). Baseline: the same change with a "
        f"healthy leader, in the same run. {b['runs']} runs of each, interleaved; every fault run checks "
        "that the other replica took the lease.",
        "",
        "| scenario | median | ratio vs baseline | runs | goal |",
        "|---|---|---|---|---|",
    ]
    for r in b["rows"]:
        goal = "-" if r["goal_met"] is None else f"{GOALS['b6']}: {_met(r['goal_met'])}"
        runs = ", ".join(f"{v} s" for v in r["runs_s"])
        lines.append(f"| {r['scenario']} | {r['median_s']} s | {r['ratio_vs_baseline']} | {runs} | {goal} |")
    return [*lines, ""]


def _b7(b: dict[str, Any]) -> list[str]:
    runs = b["runs_s"]
    return [
        "## B7 through Kueue",
        "",
        f"The same {b['shape']} CPU job as B1, applied unqueued (the baseline) and labelled "
        "`kueue.x-k8s.io/queue-name` for a real Kueue (v0.17, with its webhooks) whose ClusterQueue has room "
        f"for it; {b['runs']} runs of each, interleaved, in the same run. Times from `kubectl apply`; "
        "`admitted`: the job's `Admitted` condition turned True.",
        "",
        "| job | apply → admitted | admitted → step 1 | apply → step 1 | ratio vs unqueued | runs (apply → step 1) |",
        "|---|---|---|---|---|---|",
        f"| unqueued | - | - | {b['plain_first_step_s']} s | 1.0 | {', '.join(f'{v} s' for v in runs['plain'])} |",
        f"| through Kueue | {b['queued_admitted_s']} s | {b['queued_admission_to_first_step_s']} s | "
        f"{b['queued_first_step_s']} s | {b['ratio']} | {', '.join(f'{v} s' for v in runs['queued'])} |",
        "",
        (
            f"Kueue adds {b['overhead_s']} s to the time to the first step (median against median)."
            if b["overhead_s"] >= 0
            else f"Through Kueue the first step came {-b['overhead_s']} s sooner (median against median), within "
            "the runs' spread: admission adds no time that this run can measure."
        ),
        "",
    ]


def markdown(results: dict[str, Any], json_path: Path, plot_paths: list[Path], doc_dir: Path) -> str:
    m = results["machine"]

    def rel(path: Path) -> str:
        return os.path.relpath(path, doc_dir)

    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (or `make bench-quick`) from "
        f"[`{rel(json_path)}`]({rel(json_path)}); do not edit by hand. Every figure is the median of "
        "several runs and is compared with a baseline measured in the same run on the same machine.",
        "",
        f"Run {_runs(results)}, {results['seconds']} s in all"
        + (
            f" ({', '.join(f'{k} {v} s' for k, v in parts.items())})"
            if (parts := results.get("seconds_by_part"))
            else ""
        )
        + ", on "
        f"{m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']}, Python {m['python']}, "
        f"torch {m['torch']}, Kubernetes {m['kubernetes']}.",
        "",
    ]
    if "b1" in results:
        b1 = results["b1"]
        lines += [
            "## B1 launch",
            "",
            f"From `kubectl apply` of a {b1['shape']} CPU job to every rank finishing step 1, on the local control "
            "plane; baseline: the same script under plain `torchrun` (4 local agents, a local store), in rounds "
            "alternating with the ElasticJob's. The same jobs go on to B2's faults.",
            "",
            "| torchrun (baseline) | ElasticJob | overhead | ratio | goal |",
            "|---|---|---|---|---|",
            f"| {b1['torchrun_s']} s | {b1['elasticjob_s']} s | {b1['overhead_s']} s | {b1['ratio']} | "
            f"{GOALS['b1']}: {_met(b1['overhead_s'] <= 3)} |",
            "",
            f"Runs: torchrun {b1['runs']['torchrun']}, ElasticJob {b1['runs']['elasticjob']}.",
            "",
        ]
    if "b2a" in results:
        lines += _b2(results)
    if "b3" in results:
        b3 = results["b3"]
        lines += [
            "## B3 rendezvous scale",
            "",
            f"N agents ({b3['per_process']} threads per process) join one rendezvous through the project's "
            f"store (`elasticjob-launch store`); {b3['repeats']} runs per size, join timeout {b3['timeout_s']} s "
            "(a run that times out is not repeated, and larger sizes of that variant are skipped). Each agent "
            "keeps its store connections across runs, as a job's agents do; opening them is not timed. "
            "Baseline: stock torch `DynamicRendezvousHandler` (c10d) defaults. `elasticjob` is the launcher's "
            "own handler (`--rdzv-backend elasticjob`: an `add`, a `set` and a `wait` per join). Traffic "
            "columns count the c10d handler's reads and compare-and-set writes of its shared state blob, "
            "per joining agent.",
            "",
            "| variant | agents | median | ratio vs stock | finished | state reads/join | CAS writes/join | "
            "failed CAS/join | state bytes/join | goal |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in b3["rows"]:
            goal = B3_GOALS.get(r["nodes"])
            met = None if goal is None else (r["median_s"] is not None and r["median_s"] <= goal)
            median = f"{r['median_s']} s" if r["median_s"] is not None else "did not finish"
            lines.append(
                f"| {r['variant']} | {r['nodes']} | {median} | {r['ratio_vs_stock'] or '-'} | "
                f"{r['finished']}/{r['runs']} | "
                + "".join(f"{'-' if r[k] is None else r[k]} | " for k in TRAFFIC)
                + f"{'-' if goal is None else f'<= {goal} s: {_met(met)}'} |"
            )
        lines += ["", *_b3_not_run(b3)]
    if "b4" in results:
        lines += _b4(results["b4"])
    if "b5b" in results:
        lines += _b5b(results["b5b"])
    if "b6" in results:
        lines += _b6(results["b6"])
    if "b7" in results:
        lines += _b7(results["b7"])
    if plot_paths:
        lines += ["## Plots", ""] + [f"![{p.stem}]({rel(p)})" for p in plot_paths] + [""]
    lines += [
        "## Reproduce",
        "",
        "```sh",
        "make bench-quick   # B1, B2/B5, B3, B4, B5b, B6 and B7 with fewer sizes, runs and variants",
        "make bench         # every size, more runs",
        ".venv/bin/python -m elasticjob_bench --only b3   # one benchmark",
        "```",
        "",
    ]
    return "\n".join(lines)
