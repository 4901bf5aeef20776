"""`python -m elasticjob_localcluster up|down|status|lose-node NODE|restore-node NODE|install-kueue|...`.

The commands: up|down|status|lose-node NODE|restore-node NODE|install-kueue|uninstall-kueue|agent.

`install-kueue` builds (once) and installs Kueue with its webhooks into the running cluster
(`elasticjob_localcluster.kueue`); `uninstall-kueue` removes it but its CRDs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elasticjob_localcluster.cluster import Cluster, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elasticjob_localcluster", description=__doc__)
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "lose-node", "restore-node", "install-kueue", "uninstall-kueue", "agent"],
    )
    parser.add_argument("node", nargs="?", help="node name, for lose-node/restore-node")
    parser.add_argument(
        "--state", type=Path, default=None, help="state directory (default .cluster or $ELASTICJOB_CLUSTER_DIR)"
    )
    opts = parser.parse_args(argv)
    state = (opts.state or default_state_dir()).resolve()
    if opts.command == "agent":
        from elasticjob_localcluster.nodeagent import main as agent_main

        return agent_main(state)
    cluster = Cluster(state)
    if opts.command == "up":
        cluster.start()
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={cluster.bin}:$PATH")
    elif opts.command == "down":
        cluster.stop()
        left = cluster.leftovers()
        if left:
            print("left behind: " + ", ".join(left), file=sys.stderr)
            return 1
    elif opts.command in ("install-kueue", "uninstall-kueue"):
        from elasticjob_localcluster import kueue

        def say(line: str) -> None:
            print(line, flush=True)

        if opts.command == "install-kueue":
            kueue.install(cluster.kubeconfig, kueue.ensure(), progress=say)
        else:
            kueue.uninstall(cluster.kubeconfig, progress=say)
    elif opts.command == "status":
        from elasticjob_localcluster import procs

        print("running: " + (", ".join(procs.running(state)) or "nothing"))
    else:
        if not opts.node:
            parser.error(f"{opts.command} needs a node name")
        (cluster.lose_node if opts.command == "lose-node" else cluster.restore_node)(opts.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
