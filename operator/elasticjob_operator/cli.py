"""`elasticjob-operator`: run the kopf operator for ElasticJobs.

Flags (each also readable from the environment variable in brackets) select the watched
namespaces, the health endpoint's port and kopf peering. Logging is configured here, at start,
never at import.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


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
        "--health-port",
        type=int,
        default=int(os.environ.get("ELASTICJOB_HEALTH_PORT", "8080")),
        help="port of the /healthz liveness endpoint, 0 to disable [ELASTICJOB_HEALTH_PORT]",
    )
    parser.add_argument(
        "--peering",
        default=os.environ.get("ELASTICJOB_PEERING", ""),
        help="kopf peering name for several operator replicas; empty: standalone [ELASTICJOB_PEERING]",
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
    # the handlers module reads these when its decorators run
    os.environ["ELASTICJOB_RECONCILE_INTERVAL"] = str(opts.reconcile_interval)
    os.environ["ELASTICJOB_NODE_LOST_GRACE_SECONDS"] = str(opts.node_lost_grace_seconds)
    import kopf

    from elasticjob_operator import handlers  # noqa: F401  (registers the handlers)

    namespaces = [] if opts.all_namespaces else opts.namespace
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=not opts.peering,
        peering_name=opts.peering or None,
        liveness_endpoint=f"http://0.0.0.0:{opts.health_port}/healthz" if opts.health_port else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
