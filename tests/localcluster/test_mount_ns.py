"""The node agent's container boundary: a mount namespace, pinned while the container is tracked.

The kernel hands a freed namespace's id to the next namespace created. The node agent finds a
container's processes by namespace id to kill them, so a stale id once killed a new pod's trainer
(a fault run, 2026-11-29). Needs root (unshare), as the local cluster does.
"""

from __future__ import annotations

import os
import subprocess
import time

from elasticjob_localcluster.mountns import mount_ns, pids_in_mount_ns, pin_mount_ns


def _new_namespace_id() -> str:
    out = subprocess.run(["unshare", "-m", "readlink", "/proc/self/ns/mnt"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _in_own_namespace(proc: subprocess.Popen[bytes]) -> str:
    ours, deadline = mount_ns(os.getpid()), time.monotonic() + 10
    while time.monotonic() < deadline:
        ns = mount_ns(proc.pid)
        if ns is not None and ns != ours:
            return ns
        time.sleep(0.01)
    raise AssertionError("unshare never entered a mount namespace of its own")


def test_a_pinned_namespace_keeps_its_id_after_its_processes_die() -> None:
    proc = subprocess.Popen(["unshare", "-m", "sleep", "60"])
    try:
        ns = _in_own_namespace(proc)
        pinned = pin_mount_ns(proc.pid)
        assert pinned is not None and pinned[0] == ns
        assert pids_in_mount_ns(ns) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    try:
        later = [_new_namespace_id() for _ in range(5)]
        assert ns not in later, "a new namespace got the id of the one still pinned"
        assert pids_in_mount_ns(ns) == []
    finally:
        os.close(pinned[1])


def test_pinning_a_process_that_is_gone_gives_nothing() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert pin_mount_ns(proc.pid) is None
