"""Certificates and keys for the local control plane, made with the `openssl` command.

A CA, the API server's serving certificate (with the addresses pods and the host use), an admin
client certificate (group system:masters) for the kubeconfig, the nodes' kubelet serving
certificate (the nodes' address) with the API server's client certificate for it (kubeadm's
`apiserver-kubelet-client`), and the service-account signing key pair. `make_ca` and
`make_serving_cert` also serve other servers the API server calls (Kueue's webhooks).
Limits: RSA 2048, valid 10 days; meant for throw-away test clusters only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _sign(pki: Path, name: str, subject: str, extensions: str) -> None:
    key, csr, ext = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.ext"
    _run("genrsa", "-out", str(key), "2048")
    _run("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _run(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-out", str(pki / f"{name}.crt"), "-days", "10", "-extfile", str(ext),
    )  # fmt: skip


def make_ca(pki: Path, common_name: str) -> None:
    """`pki/ca.key` and the self-signed `pki/ca.crt`, unless a CA is there already."""
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        _run("genrsa", "-out", str(pki / "ca.key"), "2048")
        _run(
            "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-subj", f"/CN={common_name}",
            "-days", "10", "-out", str(pki / "ca.crt"),
        )  # fmt: skip


def make_serving_cert(pki: Path, name: str, dns_names: list[str]) -> None:
    """`pki/<name>.crt` and `.key`: a TLS server certificate for `dns_names`, signed by pki's CA."""
    sans = ",".join(f"DNS:{n}" for n in dns_names)
    _sign(pki, name, f"/CN={dns_names[0]}", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")


def make_pki(pki: Path, server_ips: list[str], node_ip: str) -> None:
    """Write everything into `pki` (idempotent: an existing CA is reused)."""
    make_ca(pki, "elasticjob-localcluster-ca")
    names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ]
    sans = ",".join([*(f"DNS:{n}" for n in names), *(f"IP:{ip}" for ip in server_ips)])
    _sign(pki, "apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    _sign(pki, "admin", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth\n")
    _sign(pki, "kubelet", "/CN=elasticjob-node-agent", f"subjectAltName=IP:{node_ip}\nextendedKeyUsage=serverAuth\n")
    client = "/O=system:masters/CN=kube-apiserver-kubelet-client"
    _sign(pki, "apiserver-kubelet-client", client, "extendedKeyUsage=clientAuth\n")
    _run("genrsa", "-out", str(pki / "sa.key"), "2048")
    _run("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
