"""`elasticjob-launch`: torchrun's flags (and `PET_*` variables), plus `store` mode.

    elasticjob-launch [torchrun flags] script.py [args...]       # worker mode
    elasticjob-launch store --port 29400 [--health-port 8080]    # the rendezvous store

Every flag's default comes from its environment variable `PET_<FLAG>` (dashes as underscores),
as torchrun does, so the operator configures worker pods through the environment alone.
Exit codes: see `elasticjob_api.exitcodes`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from elasticjob_api.exitcodes import ExitCode

from elasticjob_launcher.config import (
    PINNING_MODES,
    WORKER_STARTS,
    LauncherConfig,
    parse_nnodes,
    parse_nproc,
    parse_rdzv_conf,
)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"PET_{name.upper().replace('-', '_')}", default)


def _flag(parser: argparse.ArgumentParser, name: str, *, default: str | None, help: str, **kw: object) -> None:
    """Add `--name` (and torchrun's `--name_with_underscores`) defaulting to `PET_NAME`."""
    spellings = [f"--{name}"]
    if "-" in name:
        spellings.append(f"--{name.replace('-', '_')}")
    env = f"PET_{name.upper().replace('-', '_')}"
    parser.add_argument(*spellings, default=_env(name, default), help=f"{help} [{env}]", **kw)  # type: ignore[arg-type]


def _switch(parser: argparse.ArgumentParser, name: str, *, help: str, short: str | None = None) -> None:
    spellings = [f"--{name}"] + ([short] if short else [])
    if "-" in name:
        spellings.append(f"--{name.replace('-', '_')}")
    env = f"PET_{name.upper().replace('-', '_')}"
    default = (_env(name, "") or "").lower() in ("1", "true", "yes")
    parser.add_argument(*spellings, action="store_true", default=default, help=f"{help} [{env}]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elasticjob-launch",
        description="torchrun-compatible elastic launcher. `elasticjob-launch store --help` for the store mode.",
    )
    _flag(parser, "nnodes", default="1:1", help="number of nodes, N or MIN:MAX")
    _flag(parser, "nproc-per-node", default="1", help="workers per node: an integer, auto, gpu or cpu")
    _flag(
        parser, "rdzv-backend", default="c10d",
        help="rendezvous backend: c10d (torch's) or elasticjob (O(1) store round-trips per join)",
    )  # fmt: skip
    _flag(parser, "rdzv-endpoint", default="", help="rendezvous store HOST:PORT")
    _flag(parser, "rdzv-id", default="none", help="rendezvous run id (the job's uid under the operator)")
    _flag(
        parser, "rdzv-conf", default="", help="rendezvous options key=value,... (join_timeout, last_call_timeout, ...)"
    )
    _switch(parser, "standalone", help="single node: start a local store in this process")
    _flag(parser, "max-restarts", default="0", help="worker-group restarts allowed, counted job-wide")
    _flag(parser, "monitor-interval", default="0.1", help="seconds between worker health checks")
    _flag(parser, "role", default="default", help="worker role name")
    _switch(parser, "module", short="-m", help="run the script as a python module (python -m)")
    _switch(parser, "no-python", help="run the command as is, not under python")
    _flag(parser, "log-dir", default=None, help="directory for the workers' log files")
    _flag(parser, "redirects", default="0", help="redirect worker std streams to files: 0 none, 1 out, 2 err, 3 both")
    _flag(parser, "tee", default="0", help="tee worker std streams to files and the console: 0-3 as --redirects")
    _flag(parser, "local-addr", default=None, help="this node's address for the rendezvous")
    parser.add_argument(
        "--numa-binding",
        "--numa_binding",
        "--pinning",
        default=_env("numa-binding", "none"),
        choices=PINNING_MODES,
        help="pin each worker to its GPU and nearby CPUs (docs/pinning.md) [PET_NUMA_BINDING]",
    )
    parser.add_argument(
        "--worker-start",
        "--worker_start",
        default=_env("worker-start", "preload"),
        choices=WORKER_STARTS,
        help="preload: fork workers from a process that imported torch once (fast restarts); "
        "exec: a fresh python per worker, as torchrun [PET_WORKER_START]",
    )
    _flag(parser, "store-wait-timeout", default="900", help="seconds to wait for the rendezvous store to answer")
    parser.add_argument("training_script", help="the training script (or command with --no-python)")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def build_store_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticjob-launch store", description="Serve the c10d rendezvous store.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ELASTICJOB_STORE_PORT", "29400")))
    parser.add_argument("--health-port", type=int, default=None, help="serve GET /healthz on this port")
    parser.add_argument(
        "--generation",
        type=int,
        default=int(os.environ.get("ELASTICJOB_STORE_GENERATION", "0")),
        help="store incarnation; agents start a fresh rendezvous when it changes [ELASTICJOB_STORE_GENERATION]",
    )
    return parser


def parse_config(argv: Sequence[str]) -> LauncherConfig:
    opts = build_parser().parse_args(list(argv))
    min_nodes, max_nodes = parse_nnodes(str(opts.nnodes))
    if opts.standalone:
        min_nodes = max_nodes = 1
    try:
        max_restarts, monitor, wait = (
            int(opts.max_restarts),
            float(opts.monitor_interval),
            float(opts.store_wait_timeout),
        )
    except ValueError as exc:
        raise ValueError(f"bad numeric flag: {exc}") from None
    return LauncherConfig(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=parse_nproc(str(opts.nproc_per_node)),
        training_script=opts.training_script,
        training_script_args=tuple(opts.training_script_args),
        rdzv_backend=str(opts.rdzv_backend),
        rdzv_endpoint=str(opts.rdzv_endpoint or ""),
        rdzv_id=str(opts.rdzv_id),
        rdzv_conf=parse_rdzv_conf(str(opts.rdzv_conf or "")),
        standalone=bool(opts.standalone),
        max_restarts=max_restarts,
        monitor_interval=monitor,
        role=str(opts.role),
        module=bool(opts.module),
        no_python=bool(opts.no_python),
        log_dir=opts.log_dir,
        redirects=str(opts.redirects),
        tee=str(opts.tee),
        local_addr=opts.local_addr,
        numa_binding=str(opts.numa_binding),
        store_wait_timeout=wait,
        worker_start=str(opts.worker_start),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("ELASTICJOB_LOG_LEVEL", "INFO"),
        format="[elasticjob-launch] %(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args[:1] == ["store"]:
        from elasticjob_launcher.store import serve

        opts = build_store_parser().parse_args(args[1:])
        return serve(opts.port, opts.health_port, opts.generation)
    try:
        config = parse_config(args)
    except ValueError as exc:
        print(f"elasticjob-launch: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    from elasticjob_launcher.launch import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
