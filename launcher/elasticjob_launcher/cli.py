"""`elasticjob-launch`: torchrun's command line over the project's launcher API, plus `store` mode.

    elasticjob-launch [torchrun flags] script.py [args...]       # worker mode
    elasticjob-launch store --port 29400 [--health-port 8080]    # the rendezvous store

As torch's `run.py` over `launcher/api.py`: argparse (every torchrun flag, each defaulting to its
`PET_<FLAG>` variable through torch's own argparse actions) -> `config_from_args` -> a frozen
`LaunchConfig` -> `elastic_launch`. `main(argv)` behaves as torch's `main`: it returns nothing
and raises (`ChildFailedError`, `ValueError`, ...). The console script is `entry`, which turns
the outcome into one of `elasticjob_api.exitcodes.ExitCode`, the codes the operator classifies.

The project's own flags use `ELASTICJOB_*` variables (torchrun reserves `PET_*`); the old
`PET_WORKER_START` and `PET_STORE_WAIT_TIMEOUT` still work, with a deprecation warning.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from elasticjob_api.exitcodes import ExitCode
from elasticjob_api.models import DEFAULT_RDZV_PORT

from elasticjob_launcher.config import (
    DEFAULT_SIGNALS,
    PINNING_MODES,
    START_METHODS,
    WORKER_STARTS,
    LaunchConfig,
    parse_nnodes,
    parse_nproc,
    parse_rdzv_conf,
)
from elasticjob_launcher.hosted import MODES

log = logging.getLogger(__name__)

#: torchrun reads the tee'd lines' prefix from here when --log-line-prefix-template is not given
LOG_PREFIX_VARIABLE = "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"

#: the project's flags: (flag, variable, deprecated torchrun-prefixed variable)
OWN_VARIABLES = {
    "worker_start": ("ELASTICJOB_WORKER_START", "PET_WORKER_START"),
    "store_wait_timeout": ("ELASTICJOB_STORE_WAIT_TIMEOUT", "PET_STORE_WAIT_TIMEOUT"),
    "stall_timeout": ("ELASTICJOB_STALL_TIMEOUT", ""),
}


def _own_default(dest: str, default: str) -> str:
    name, old = OWN_VARIABLES[dest]
    if name in os.environ:
        return os.environ[name]
    if old and old in os.environ:
        warnings.warn(f"{old} is deprecated (torchrun reserves PET_*): use {name}", DeprecationWarning, stacklevel=3)
        return os.environ[old]
    return default


def comma_list(text: str) -> list[str]:
    """torchrun's comma-separated list; a doubled comma is a literal comma."""
    return [p.replace("\0", ",") for p in text.replace(",,", "\0").split(",") if p] if text else []


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None


def _spellings(name: str, *short: str) -> list[str]:
    return [*short, f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])


class _PrintCompletion(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, opt: Any = None) -> None:
        try:
            import shtab  # type: ignore[import-not-found]
        except ImportError:
            parser.exit(1, f"{opt} needs the 'shtab' package: pip install shtab\n")
        print(shtab.complete(parser, shell=values))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from torch.distributed.argparse_util import check_env, env

    p = argparse.ArgumentParser(
        prog="elasticjob-launch",
        description="torchrun-compatible elastic launcher: every torchrun flag, job-wide restarts, status "
        "reports, preloaded workers. `elasticjob-launch store --help` for the store mode. Each flag defaults "
        "to its PET_<FLAG> variable, as torchrun's.",
    )

    def opt(name: str, *short: str, **kw: Any) -> None:
        p.add_argument(*_spellings(name, *short), action=env, **kw)

    def switch(name: str, *short: str, help: str) -> None:
        p.add_argument(*_spellings(name, *short), action=check_env, help=help)

    opt("nnodes", default="1:1", help="number of nodes, N or MIN:MAX")
    opt("nproc-per-node", default="1", help="workers per node: an integer, auto, cpu, gpu or xpu")
    opt(
        "rdzv-backend", default="static",
        help="static (torchrun's default: --master-addr/--master-port/--node-rank), c10d, or elasticjob "
        "(O(1) store round-trips per join; registered for stock torchrun too)",
    )  # fmt: skip
    opt("rdzv-endpoint", default="", help="rendezvous store HOST[:PORT]")
    opt("rdzv-id", default="none", help="rendezvous run id (the job's uid under the operator)")
    opt("rdzv-conf", default="", help="rendezvous options key=value,... (join_timeout, last_call_timeout, ...)")
    switch("standalone", help="single node: host the rendezvous store in this process")
    opt("max-restarts", type=int, default=0, help="worker-group restarts allowed, counted job-wide")
    opt("monitor-interval", type=float, default=0.1, help="seconds between worker health checks")
    opt(
        "start-method", default="spawn", choices=START_METHODS,
        help="how function entrypoints (--run-path) start; scripts are exec'd or forked per --worker-start",
    )  # fmt: skip
    opt("event-log-handler", default="null", help="torch.distributed.elastic.events handler for launch events")
    opt("role", default="default", help="worker role name")
    switch("module", "-m", help="run the script as a python module (python -m)")
    switch("no-python", help="run the command as is, not under python")
    switch("run-path", help="run the script with runpy.run_path in a worker process (takes precedence)")
    opt("log-dir", default=None, help="directory for the workers' log files")
    opt("redirects", "-r", default="0", help="redirect worker streams to files: 0 none, 1 out, 2 err, 3 both")
    opt("tee", "-t", default="0", help="tee worker streams to files and the console: 0-3 as --redirects")
    opt("log-line-prefix-template", default="", help="prefix of tee'd console lines, e.g. '[${rank}]: '")
    opt("local-ranks-filter", default="", help="local ranks whose output reaches the console, e.g. 0,1")
    opt("duplicate-stdout-filters", type=comma_list, default=[], help="copy stdout lines matching any to a file")
    opt("duplicate-stderr-filters", type=comma_list, default=[], help="copy stderr lines matching any to a file")
    opt("node-rank", type=int, default=0, help="this node's rank (static rendezvous only)")
    opt("master-addr", default="127.0.0.1", help="node rank 0's address (static rendezvous only)")
    opt("master-port", type=int, default=None, help="node rank 0's store port (static rendezvous; 29500)")
    opt("local-addr", default=None, help="this node's address for the rendezvous")
    p.add_argument(
        *_spellings("logs-specs"), default=None, help="a torchrun.logs_specs entry point name (custom LogsSpecs)"
    )
    p.add_argument(
        *_spellings("numa-binding"), "--pinning", action=env, default="none", choices=PINNING_MODES,
        help="pin each worker to its GPU and nearby CPUs (docs/pinning.md)",
    )  # fmt: skip
    opt("signals-to-handle", default=DEFAULT_SIGNALS, help="signals forwarded to the workers")
    opt("shutdown-timeout", type=int, default=None, help="seconds between SIGTERM and SIGKILL at worker shutdown")
    switch("virtual-local-rank", help="LOCAL_RANK=0 in every worker, each seeing only its own GPU")
    p.add_argument(
        *_spellings("print-completion"), action=_PrintCompletion, choices=["bash", "zsh", "tcsh"],
        help="print a shell completion script (needs shtab) and exit",
    )  # fmt: skip
    # the project's own
    p.add_argument(
        *_spellings("worker-start"), default=_own_default("worker_start", "preload"), choices=WORKER_STARTS,
        help="preload: fork workers from a process that imported torch once (fast restarts); exec: a fresh "
        "python per worker, as torchrun [ELASTICJOB_WORKER_START]",
    )  # fmt: skip
    p.add_argument(
        *_spellings("store-wait-timeout"), type=float, default=float(_own_default("store_wait_timeout", "900")),
        help="seconds to wait for the rendezvous store to answer [ELASTICJOB_STORE_WAIT_TIMEOUT]",
    )  # fmt: skip
    p.add_argument(
        *_spellings("stall-timeout"), type=_seconds, default=_own_default("stall_timeout", "0"),
        help="seconds a worker may spend in one torch.distributed call (or, once it calls "
        "elasticjob_launcher.progress.step(), between steps) before the group is reported as hung and "
        "restarted; 0: off (docs/fault-tolerance.md) [ELASTICJOB_STALL_TIMEOUT]",
    )  # fmt: skip
    p.add_argument(
        *_spellings("command-starts-agent"), default=os.environ.get("ELASTICJOB_COMMAND_STARTS_AGENT", "no"),
        choices=MODES, help="with --no-python: whether the command starts its own agent (torchrun in a shell "
        "wrapper or an entrypoint script): yes runs it once with torchrun resolving to this launcher; auto "
        "looks for torchrun in the command and its scripts (hosted.py) [ELASTICJOB_COMMAND_STARTS_AGENT]",
    )  # fmt: skip
    p.add_argument("training_script", help="the training script (or command with --no-python)")
    p.add_argument("training_script_args", nargs=argparse.REMAINDER, help="its arguments")
    return p


def build_store_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elasticjob-launch store", description="Serve the c10d rendezvous store.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ELASTICJOB_STORE_PORT", DEFAULT_RDZV_PORT)))
    parser.add_argument("--health-port", type=int, default=None, help="serve GET /healthz on this port")
    parser.add_argument(
        "--generation",
        type=int,
        default=int(os.environ.get("ELASTICJOB_STORE_GENERATION", "0")),
        help="store incarnation; agents start a fresh rendezvous when it changes [ELASTICJOB_STORE_GENERATION]",
    )
    return parser


def parse_min_max_nnodes(nnodes: str) -> tuple[int, int]:
    """torch's helper of the same name (RuntimeError on a bad form, as torch's)."""
    try:
        return parse_nnodes(nnodes)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None


def _logs_specs(args: argparse.Namespace) -> Any:
    from importlib import metadata

    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std

    cls: Any = DefaultLogsSpecs
    if args.logs_specs is not None:
        group = metadata.entry_points().select(group="torchrun.logs_specs")
        if not group.select(name=args.logs_specs):
            raise ValueError(f"no entry point torchrun.logs_specs[{args.logs_specs}] is installed")
        cls = group[args.logs_specs].load()
    ranks = None
    if args.local_ranks_filter:
        try:
            ranks = {int(r) for r in args.local_ranks_filter.split(",")}
        except ValueError:
            raise ValueError(
                f"--local-ranks-filter must be integers like 0,1,2, got {args.local_ranks_filter!r}"
            ) from None
    try:
        redirects, tee = Std.from_str(args.redirects), Std.from_str(args.tee)
    except ValueError:
        raise ValueError(
            f"--redirects and --tee take 0-3 or rank:0-3,..., got {args.redirects!r}, {args.tee!r}"
        ) from None
    return cls(log_dir=args.log_dir, redirects=redirects, tee=tee, local_ranks_filter=ranks)


def _rendezvous(args: argparse.Namespace) -> tuple[str, str, str, bool]:
    """(backend, endpoint, run id, standalone), with torchrun's rules for --standalone and one node."""
    backend, endpoint, run_id = str(args.rdzv_backend), str(args.rdzv_endpoint or ""), str(args.rdzv_id)
    standalone = bool(args.standalone)
    _, max_nodes = parse_nnodes(str(args.nnodes))
    if not standalone and backend == "static" and not endpoint and args.master_port is None and max_nodes == 1:
        standalone = True  # torchrun: one node and no rendezvous flags is a standalone run
    if standalone:
        return "c10d", "", run_id if run_id != "none" else str(uuid.uuid4()), True
    if backend == "static" and not endpoint:
        endpoint = f"{args.master_addr}:{args.master_port or 29500}"
    return backend, endpoint, run_id, False


def config_from_args(args: argparse.Namespace) -> tuple[LaunchConfig, Callable[..., Any] | str, list[str]]:
    """torch's `config_from_args`: the config, the workers' entrypoint and its arguments."""
    if os.environ.get("TORCHELASTIC_RUN_ID") and os.environ.get("ELASTICJOB_POD_NAME"):
        raise ValueError(
            "this launcher runs inside a worker of another elastic agent, and a pod runs exactly one: "
            "the trainer command starts torchrun itself; run it with --no-python --command-starts-agent yes"
        )
    min_nodes, max_nodes = parse_nnodes(str(args.nnodes))
    nproc = parse_nproc(str(args.nproc_per_node))
    if "OMP_NUM_THREADS" not in os.environ and nproc > 1:
        log.warning("setting OMP_NUM_THREADS=1 for each worker (torchrun's default with several workers per node)")
        os.environ["OMP_NUM_THREADS"] = "1"
    backend, endpoint, run_id, standalone = _rendezvous(args)
    rdzv_configs: dict[str, Any] = dict(parse_rdzv_conf(str(args.rdzv_conf or "")))
    if backend == "static":
        rdzv_configs["rank"] = args.node_rank
    local_addr = args.local_addr or ("localhost" if standalone else None)
    config = LaunchConfig(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=nproc,
        logs_specs=_logs_specs(args),
        run_id=run_id,
        role=str(args.role),
        rdzv_endpoint=endpoint,
        rdzv_backend=backend,
        rdzv_configs=rdzv_configs,
        max_restarts=int(args.max_restarts),
        monitor_interval=float(args.monitor_interval),
        start_method=str(args.start_method),
        log_line_prefix_template=args.log_line_prefix_template or os.environ.get(LOG_PREFIX_VARIABLE),
        local_addr=local_addr,
        event_log_handler=str(args.event_log_handler),
        signals_to_handle=str(args.signals_to_handle),
        duplicate_stdout_filters=list(args.duplicate_stdout_filters),
        duplicate_stderr_filters=list(args.duplicate_stderr_filters),
        virtual_local_rank=bool(args.virtual_local_rank),
        shutdown_timeout=args.shutdown_timeout,
        standalone=standalone,
        store_wait_timeout=float(args.store_wait_timeout),
        pinning=str(args.numa_binding),
        worker_start=str(args.worker_start),
        stall_timeout=float(args.stall_timeout) or None,
    )
    from elasticjob_launcher import worker

    cmd: Callable[..., Any] | str
    cmd_args: list[str] = []
    if args.run_path:
        cmd = worker.run_script_path
        cmd_args.append(args.training_script)
    elif args.no_python:
        if args.module:
            raise ValueError("--module and --no-python cannot be used together")
        cmd = args.training_script
    else:
        cmd = os.environ.get("PYTHON_EXEC", sys.executable)
        cmd_args += ["-u", *(["-m"] if args.module else []), args.training_script]
    cmd_args.extend(args.training_script_args)
    return config, cmd, cmd_args


def _exec_if_hosted(args: argparse.Namespace, cmd: Callable[..., Any] | str, cmd_args: list[str]) -> None:
    """A --no-python command that starts its own agent replaces this process (hosted.py)."""
    from elasticjob_launcher import hosted

    if not args.no_python or args.command_starts_agent == "no" or not isinstance(cmd, str):
        return
    command = [cmd, *cmd_args]
    if args.command_starts_agent == "yes" or hosted.starts_agent(command):
        log.info("the command starts its own agent: running it once, with torchrun as this launcher")
        hosted.exec_command(command)


def run(args: argparse.Namespace) -> None:
    """torch's `run`: launch from parsed arguments; raises on failure."""
    from elasticjob_launcher.api import elastic_launch

    config, cmd, cmd_args = config_from_args(args)
    _exec_if_hosted(args, cmd, cmd_args)
    elastic_launch(config, cmd)(*cmd_args)


def main(args: Sequence[str] | None = None) -> None:
    """torch's `main`: parse, launch; returns nothing and raises as torch's does."""
    run(build_parser().parse_args(list(sys.argv[1:] if args is None else args)))


def _store(argv: Sequence[str]) -> int:
    from elasticjob_launcher.store import serve

    opts = build_store_parser().parse_args(list(argv))
    return serve(opts.port, opts.health_port, opts.generation)


def entry(argv: Sequence[str] | None = None) -> int:
    """The console script: the launch's outcome as an `ExitCode`, the operator's contract."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=os.environ.get("ELASTICJOB_LOG_LEVEL", "INFO"),
        format="[elasticjob-launch] %(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args[:1] == ["store"]:
        return _store(args[1:])
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousTimeoutError

    from elasticjob_launcher.agent import JobEnded
    from elasticjob_launcher.store import StoreUnreachable

    try:
        parsed = build_parser().parse_args(args)
        config, cmd, cmd_args = config_from_args(parsed)
    except (ValueError, RuntimeError) as exc:
        print(f"elasticjob-launch: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    _exec_if_hosted(parsed, cmd, cmd_args)
    from elasticjob_launcher.api import elastic_launch

    try:
        elastic_launch(config, cmd)(*cmd_args)
    except (ChildFailedError, JobEnded):
        return ExitCode.USER_ERROR
    except SignalException:
        return ExitCode.DRAINED
    except RendezvousTimeoutError as exc:
        log.error("rendezvous timed out: %s", exc)
        return ExitCode.RENDEZVOUS_TIMEOUT
    except StoreUnreachable as exc:
        log.error("%s", exc)
        return ExitCode.STORE_UNREACHABLE
    return ExitCode.SUCCESS


if __name__ == "__main__":
    sys.exit(entry())
