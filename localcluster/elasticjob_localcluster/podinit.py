"""In-pod init: bind the pod's volumes at their paths, then exec the container's command.

Run by the node agent as `ip netns exec <ns> unshare --uts python -m elasticjob_localcluster.podinit SPEC`
(so the pod has its own hostname, its name, as in Kubernetes);
`ip netns exec` already gave it a private mount namespace (and /etc/resolv.conf from
/etc/netns/<ns>/), so the bind mounts here are seen only by this container's processes and go
away with them. Limits: the mount points themselves (empty directories or files) are created on
the host's filesystem when missing; there is no image root filesystem.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import stat
import sys
from pathlib import Path

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
_libc = ctypes.CDLL(None, use_errno=True)


def _bind(fd: int, target: str, read_only: bool) -> None:
    """Bind-mount what `fd` refers to at `target` (mount(2) on /proc/self/fd/N follows the open
    file itself, not its path, which a previous mount may have hidden)."""
    source = f"/proc/self/fd/{fd}".encode()
    if _libc.mount(source, target.encode(), None, MS_BIND | MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount at {target}: {os.strerror(err)}")
    if read_only and _libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"read-only remount of {target}: {os.strerror(err)}")


def main(argv: list[str] | None = None) -> int:
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])  # our own UTS namespace (unshare --uts)
    # open every source first: a later mount (say an emptyDir at /tmp) may hide another's source path
    sources = [os.open(source, os.O_PATH) for source, _, _ in spec["mounts"]]
    keep = [os.open(path, os.O_PATH) for path in spec.get("keep", [])]
    for fd, (_, target, read_only) in zip(sources, spec["mounts"], strict=True):
        dst = Path(target)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.touch(exist_ok=True)
        _bind(fd, str(dst), read_only)
    # the project's environment must stay visible even under a volume mounted over an ancestor
    # (the chart's emptyDir at /tmp hides a clone or venv living under /tmp)
    for fd, path in zip(keep, spec.get("keep", []), strict=True):
        if os.path.exists(path) and os.path.samestat(os.stat(path), os.fstat(fd)):
            continue
        Path(path).mkdir(parents=True, exist_ok=True)
        _bind(fd, path, read_only=False)
    for fd in [*sources, *keep]:
        os.close(fd)
    if spec.get("workingDir"):
        Path(spec["workingDir"]).mkdir(parents=True, exist_ok=True)
        os.chdir(spec["workingDir"])
    command = spec["command"]
    os.execvpe(command[0], command, spec["env"])  # noqa: S606 (the container's own command)


if __name__ == "__main__":
    sys.exit(main())
