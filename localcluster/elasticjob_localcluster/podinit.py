"""In-pod init: bind the pod's volumes at their paths, then exec the container's command.

Run by the node agent as `ip netns exec <ns> unshare --uts python -m elasticjob_localcluster.podinit SPEC`
(so the pod has its own hostname, its name, as in Kubernetes);
`ip netns exec` already gave it a private mount namespace (and /etc/resolv.conf from
/etc/netns/<ns>/), so the bind mounts here are seen only by this container's processes and go
away with them. Limits: the mount points themselves (empty directories or files) are created on
the host's filesystem when missing; there is no image root filesystem.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    spec = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])  # our own UTS namespace (unshare --uts)
    # open every source first: a later mount (say an emptyDir at /tmp) may hide another's source path
    sources = [os.open(source, os.O_PATH) for source, _, _ in spec["mounts"]]
    for fd, (_, target, read_only) in zip(sources, spec["mounts"], strict=True):
        dst = Path(target)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.touch(exist_ok=True)
        subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/fd/{fd}", str(dst)], check=True)
        if read_only:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True)
    for fd in sources:
        os.close(fd)
    if spec.get("workingDir"):
        Path(spec["workingDir"]).mkdir(parents=True, exist_ok=True)
        os.chdir(spec["workingDir"])
    command = spec["command"]
    os.execvpe(command[0], command, spec["env"])  # noqa: S606 (the container's own command)


if __name__ == "__main__":
    sys.exit(main())
