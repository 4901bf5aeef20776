"""`kubectl logs` on the local control plane: the API server calls the node agent's kubelet API
(`elasticjob_localcluster.kubeletapi`) over TLS, as it calls a real kubelet."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from elasticjob_localcluster import network, pki

from tests.e2e.helpers import Kube, wait_for
from tests.localcluster.test_cluster import finished, pod

SCRIPT = """
import os, sys, time
first, release = {first!r}, {release!r}
if not os.path.exists(first):
    open(first, 'w').close()
    print('first instance', flush=True)
    time.sleep(0.3)
    print('to stderr', file=sys.stderr, flush=True)
    sys.exit(3)
for i in range(3):
    print(f'line {{i}}', flush=True)
time.sleep(2.2)
print('late line', flush=True)
while not os.path.exists(release):
    time.sleep(0.1)
print('last line', flush=True)
"""
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


def logs(kube: Kube, namespace: str, *args: str) -> str:
    return kube.run("logs", "-n", namespace, "talker", *args).stdout


def test_kubectl_logs_serves_each_option(kube: Kube, ns: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    script = SCRIPT.format(first=str(tmp_path / "first"), release=str(release))
    kube.apply([pod("talker", script, restartPolicy="OnFailure")], ns)
    # before the pod is bound and started, its logs are an error: keep asking
    wait_for(
        lambda: "late line" in kube.run("logs", "-n", ns, "talker", check=False).stdout,
        60,
        "the second instance's late line",
        lambda: kube.story(ns),
    )

    assert logs(kube, ns) == "line 0\nline 1\nline 2\nlate line\n"
    assert logs(kube, ns, "--previous") == "first instance\nto stderr\n"
    assert logs(kube, ns, "--tail=2") == "line 2\nlate line\n"
    assert logs(kube, ns, "--limit-bytes=4") == "line"
    assert logs(kube, ns, "--since=1h") == logs(kube, ns)
    stamped = logs(kube, ns, "--timestamps").splitlines()
    assert len(stamped) == 4 and all(STAMP.match(line) for line in stamped), stamped
    late = stamped[3].split(" ", 1)[0]
    # sinceTime travels in whole seconds; the late line is more than 2 s after line 2
    assert logs(kube, ns, f"--since-time={late}") == "late line\n"

    follow = subprocess.Popen(
        [str(kube.bin_dir / "kubectl"), f"--kubeconfig={kube.kubeconfig}", "logs", "-f", "-n", ns, "talker"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: "late line" in (follow.stdout.readline() if follow.stdout else ""), 30, "follow", lambda: "")
        release.touch()
        rest, _ = follow.communicate(timeout=30)  # it ends by itself when the container does
    finally:
        follow.kill()
    assert rest == "last line\n" and follow.returncode == 0
    done = wait_for(lambda: finished(kube, ns, "talker"), 30, "talker to finish", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Succeeded"
    assert logs(kube, ns, "--tail=1") == "last line\n"


def _get(url: str, context: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_kubelet_api_authenticates_and_authorizes(kube: Kube, ns: str, tmp_path: Path, local_cluster: Any) -> None:
    """Without a client certificate: 401. A certificate of a user without `nodes/proxy`: 403."""
    kube.apply([pod("quiet", "print('hello')")], ns)
    wait_for(lambda: finished(kube, ns, "quiet"), 60, "quiet to finish", lambda: kube.story(ns))
    cluster_pki = Path(local_cluster.state) / "pki"
    for name in ("ca.crt", "ca.key"):
        shutil.copy(cluster_pki / name, tmp_path / name)
    pki._sign(tmp_path, "nobody", "/CN=nobody", "extendedKeyUsage=clientAuth\n")
    url = f"https://{network.GATEWAY}:10250/containerLogs/{ns}/quiet/main"
    anonymous = ssl.create_default_context(cafile=str(cluster_pki / "ca.crt"))
    assert _get(url, anonymous) == 401
    nobody = ssl.create_default_context(cafile=str(cluster_pki / "ca.crt"))
    nobody.load_cert_chain(str(tmp_path / "nobody.crt"), str(tmp_path / "nobody.key"))
    assert _get(url, nobody) == 403
    apiserver = ssl.create_default_context(cafile=str(cluster_pki / "ca.crt"))
    client = cluster_pki / "apiserver-kubelet-client"
    apiserver.load_cert_chain(f"{client}.crt", f"{client}.key")
    assert _get(url, apiserver) == 200
    assert kube.run("logs", "-n", ns, "quiet").stdout == "hello\n"


@pytest.mark.parametrize("args", [["--previous"], ["-c", "nope"]])
def test_kubectl_logs_errors_as_a_kubelet_does(kube: Kube, ns: str, args: list[str]) -> None:
    kube.apply([pod("once", "print('once')")], ns)
    wait_for(lambda: finished(kube, ns, "once"), 60, "once to finish", lambda: kube.story(ns))
    out = kube.run("logs", "-n", ns, "once", *args, check=False)
    assert out.returncode != 0
    wanted = "previous terminated container" if "--previous" in args else "nope"
    assert wanted in out.stderr, out.stderr
