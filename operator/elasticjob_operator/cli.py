"""`elasticjob-operator`: run the kopf operator for ElasticJobs.

Flags (each also readable from the environment variable in brackets) select the watched
namespaces, the probe endpoints and the leader election, with the names controller-runtime
operators are scripted against (`--health-probe-bind-address`, `--leader-elect`, ...); the old
`--health-port` still works. Logging is configured here, at start, never at import.

With `--leader-elect` every replica runs kopf's watches and indexes (so a standby takes over
warm), and only the Lease holder reconciles (leader.py). A leader that loses the lease exits at
once with status 1, as controller-runtime's managers do, and comes back as a standby.

The settings the handlers use (`handlers.Options`: the reconcile interval, the node-lost grace,
`--store-network-policy`, `--max-workers`) go to `handlers.registry(options)` and in kopf's memo,
never through the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import threading
import uuid


def _env_list(name: str) -> list[str]:
    return [n for n in os.environ.get(name, "").split(",") if n]


class QuietTimers(logging.Filter):
    """Drops kopf's INFO line after each successful timer run: 500 lines a second at 1,000 jobs.

    Failures of the timer, and everything the handlers themselves log, still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not (message.startswith("Timer '") and message.endswith("' succeeded."))


def _seconds(text: str) -> float:
    """A duration as Kubernetes components take it: `15s`, `1m30s`, `500ms`, or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 15s, 1m30s, 500ms)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticjob-operator", description="Run the ElasticJob operator.")
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=_env_list("ELASTICJOB_NAMESPACES"),
        help="namespace to watch; repeat for several; globs allowed [ELASTICJOB_NAMESPACES, comma-separated]",
    )
    parser.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        default=os.environ.get("ELASTICJOB_ALL_NAMESPACES", "") in ("1", "true"),
        help="watch every namespace (the default when no --namespace is given) [ELASTICJOB_ALL_NAMESPACES]",
    )
    parser.add_argument(
        "--health-probe-bind-address",
        default=os.environ.get("ELASTICJOB_HEALTH_PROBE_BIND_ADDRESS", ":8081"),
        help="[host]:port of /healthz (liveness) and /readyz (readiness), 0 to disable "
        "[ELASTICJOB_HEALTH_PROBE_BIND_ADDRESS]",
    )
    parser.add_argument(
        "--metrics-bind-address",
        default=os.environ.get("ELASTICJOB_METRICS_BIND_ADDRESS", ":8080"),
        help="[host]:port of the Prometheus /metrics endpoint, 0 to disable [ELASTICJOB_METRICS_BIND_ADDRESS]",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="deprecated: --health-probe-bind-address=:PORT",
    )
    parser.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("ELASTICJOB_LEADER_ELECT", "") in ("1", "true"),
        help="elect a leader on a Lease before reconciling; needed with more than one replica "
        "[ELASTICJOB_LEADER_ELECT]",
    )
    parser.add_argument(
        "--leader-elect-resource-name",
        default="elasticjob-operator",
        help="name of the leader election's Lease",
    )
    parser.add_argument(
        "--leader-elect-resource-namespace",
        default=os.environ.get("POD_NAMESPACE", "elasticjob-system"),
        help="namespace of the Lease (default: the pod's namespace, POD_NAMESPACE)",
    )
    parser.add_argument(
        "--leader-elect-identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="this replica's name in the Lease, made unique with a random suffix (default: POD_NAME, or the host name)",
    )
    for name, default, what in (
        ("lease-duration", "15s", "how long a standby waits, after the lease last changed, before taking it"),
        ("renew-deadline", "10s", "how long the leader tries to renew before it gives up leading"),
        ("retry-period", "2s", "how often candidates try to acquire and the leader renews"),
    ):
        parser.add_argument(f"--leader-elect-{name}", type=_seconds, default=_seconds(default), help=what)
    parser.add_argument(
        "--kube-api-qps",
        type=float,
        default=0.0,
        help="requests a second the operator sends (creates, deletes; client-go's token bucket), 0: unthrottled",
    )
    parser.add_argument(
        "--kube-api-burst", type=int, default=0, help="requests the operator may send at once above --kube-api-qps"
    )
    parser.add_argument(
        "--reconcile-interval",
        type=float,
        default=float(os.environ.get("ELASTICJOB_RECONCILE_INTERVAL", "2")),
        help="seconds between periodic reconciles of each job [ELASTICJOB_RECONCILE_INTERVAL]",
    )
    parser.add_argument(
        "--node-lost-grace-seconds",
        type=float,
        default=float(os.environ.get("ELASTICJOB_NODE_LOST_GRACE_SECONDS", "30")),
        help="how long a node may be NotReady before its pods are force-deleted and replaced "
        "[ELASTICJOB_NODE_LOST_GRACE_SECONDS]",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=int(os.environ.get("ELASTICJOB_MAX_WORKERS", "8")),
        help="threads that run reconciles (kopf's executor) [ELASTICJOB_MAX_WORKERS]",
    )
    parser.add_argument(
        "--store-network-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give each job a NetworkPolicy that admits only its worker pods to its rendezvous store's port "
        "(needs a network plugin that enforces NetworkPolicy; docs/security.md)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ELASTICJOB_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level [ELASTICJOB_LOG_LEVEL]",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    logging.basicConfig(level=opts.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").addFilter(QuietTimers())
    import kopf
    import prometheus_client

    from elasticjob_operator import handlers
    from elasticjob_operator.health import Health, parse_bind_address, serve
    from elasticjob_operator.kube import Kube, RateLimiter
    from elasticjob_operator.leader import ElectionSettings, LeaderElector
    from elasticjob_operator.metrics import Metrics

    try:
        metrics_at = parse_bind_address(opts.metrics_bind_address)
        probes = parse_bind_address(
            f":{opts.health_port}" if opts.health_port is not None else opts.health_probe_bind_address
        )
        election = (
            ElectionSettings(
                name=opts.leader_elect_resource_name,
                namespace=opts.leader_elect_resource_namespace,
                identity=f"{opts.leader_elect_identity}_{uuid.uuid4().hex[:8]}",
                lease_duration=opts.leader_elect_lease_duration,
                renew_deadline=opts.leader_elect_renew_deadline,
                retry_period=opts.leader_elect_retry_period,
            )
            if opts.leader_elect
            else None
        )
        limiter = RateLimiter(opts.kube_api_qps, opts.kube_api_burst)
        options = handlers.Options(
            reconcile_interval=opts.reconcile_interval,
            node_lost_grace_seconds=opts.node_lost_grace_seconds,
            store_network_policy=opts.store_network_policy,
            max_workers=opts.max_workers,
        )
    except ValueError as exc:
        print(f"elasticjob-operator: {exc}", file=sys.stderr)
        return 2
    kube = Kube(limiter)
    elector = LeaderElector(election, kube.api, on_lost=_exit_lost) if election else None
    metrics = Metrics(leading=lambda: elector is None or elector.leading())
    kube.observe = metrics.request
    if metrics_at is not None:
        prometheus_client.start_http_server(metrics_at[1], metrics_at[0], registry=metrics.registry)
    ready = threading.Event()
    health = Health(ready, elector, kube.api)
    server = serve(health, probes) if probes else None
    if elector is not None:
        elector.start()
    namespaces = [] if opts.all_namespaces else opts.namespace
    try:
        kopf.run(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            ready_flag=ready,
            registry=handlers.registry(options),
            memo=kopf.Memo(options=options, kube=kube, leader=elector, health=health, metrics=metrics),
        )
    finally:
        if elector is not None:
            elector.stop()  # a leader releases the lease: the standby takes over at its next retry
        if server is not None:
            server.shutdown()
    return 0


def _exit_lost() -> None:
    """Leadership lost: stop at once, as controller-runtime does; the restarted process is a standby."""
    logging.getLogger(__name__).error("leader election lost: exiting")
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
